"""Signing-key rotation through the operator command, seen by a running worker."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import jwt
from fastapi import FastAPI
from typer.testing import CliRunner

from stockyard.cli import app as cli
from stockyard.core.settings import Settings
from tests.helpers import Tenant, password_login


def cli_env(settings: Settings) -> dict[str, str]:
    assert settings.secret_key is not None and settings.database_url and settings.redis_url
    return {
        "STOCKYARD_DATABASE_URL": settings.database_url,
        "STOCKYARD_REDIS_URL": settings.redis_url,
        "STOCKYARD_SECRET_KEY": settings.secret_key.get_secret_value(),
        "STOCKYARD_LOG_LEVEL": "WARNING",
    }


async def run_cli(settings: Settings, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """Invoke the CLI in-process; it configures logging for itself, so put ours back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, list(args), env=cli_env(settings), input=stdin
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return result.exit_code, result.output


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def test_rotation_keeps_old_tokens_working_and_signs_new_ones_with_the_new_key(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    old_kid = _kid(tenant.access_token)
    code, output = await run_cli(settings, "keys", "rotate")
    assert code == 0, output
    new_kid = output.strip().rsplit(" ", 1)[-1]
    assert new_kid != old_kid

    await asyncio.sleep(settings.signing_key_cache_seconds + 0.1)
    fresh = await password_login(client, slug=tenant.slug, email=tenant.owner_email)
    assert _kid(fresh.json()["access_token"]) == new_kid
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 200

    jwks = (await client.get("/.well-known/jwks.json")).json()
    kids = {key["kid"] for key in jwks["keys"]}
    assert {old_kid, new_kid} <= kids
    assert all(
        key["alg"] == "ES256" and key["kty"] == "EC" and "d" not in key for key in jwks["keys"]
    )

    code, listing = await run_cli(settings, "keys", "list")
    assert code == 0
    lines = listing.strip().splitlines()
    assert lines[0].startswith(new_kid) and lines[0].endswith("current")
    assert any(line.startswith(old_kid) and "retires" in line for line in lines)


async def test_an_unknown_kid_does_not_reload_the_key_set_on_every_request(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    keyring = app.state.services.keyring
    loads = 0
    original = keyring.load

    async def counting_load() -> None:
        nonlocal loads
        loads += 1
        await original()

    keyring.load = counting_load
    try:
        token = tenant.access_token.split(".")
        bogus = ".".join(
            [
                jwt.utils.base64url_encode(b'{"alg":"ES256","kid":"missing-kid"}').decode(),
                token[1],
                token[2],
            ]
        )
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                client.get("/api/v1/me", headers={"Authorization": f"Bearer {bogus}"})
                for _ in range(20)
            )
        )
        elapsed = time.monotonic() - started
    finally:
        keyring.load = original
    assert {r.status_code for r in responses} == {401}
    # At most one reload per cache period (0.2 s in tests), however many requests carry the kid.
    assert loads <= 1 + int(elapsed / settings.signing_key_cache_seconds)
    assert loads < 5
