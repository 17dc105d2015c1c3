"""`stockyard serve --ssl-certfile --ssl-keyfile`: the real command serving HTTPS with a
certificate of our own making, HSTS on its answers, and plain HTTP refused on that port."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stockyard.core.settings import Settings
from tests.support.serve import free_port, serve_env
from tests.support.services import TestServices


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_serve_speaks_tls_with_hsts(
    services: TestServices, settings: Settings, tmp_path: Path
) -> None:
    del settings  # requested for its migration of the suite's database
    cert, key = _self_signed(tmp_path)
    port = free_port()
    env = serve_env(services, public_url=f"https://127.0.0.1:{port}")
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockyard.cli", "serve", "--port", str(port),
        "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=trusted) as api:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = await api.get("/health")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            assert health.status_code == 200
            assert health.headers["strict-transport-security"] == (
                "max-age=31536000; includeSubDomains"
            )
            page = await api.get("/console/sign-in")
            assert page.status_code == 200
            # Secure deployment: the console's cookies are __Host- and Secure.
            cookie = page.headers["set-cookie"]
            assert cookie.startswith("__Host-stockyard-sign-in=") and "Secure" in cookie
        # An untrusted certificate is refused by a verifying client; plain HTTP gets nothing.
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}") as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/health")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get("/health")
    finally:
        server.terminate()
        await server.wait()


async def test_plain_http_sends_no_hsts(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert "strict-transport-security" not in response.headers


def test_serve_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stockyard.cli import app

    cert, _ = _self_signed(tmp_path)
    result = CliRunner().invoke(app, ["serve", "--ssl-certfile", str(cert)])
    assert result.exit_code != 0
    assert "go together" in result.output
