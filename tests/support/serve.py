"""The real `stockyard serve` command in a process of its own, on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.services import TestServices


def serve_env(services: TestServices, **settings: str) -> dict[str, str]:
    """The environment for `stockyard serve` on the suite's services (nothing of this
    process's own STOCKYARD_* configuration), with the suite's secret, IP and sign-in limits
    out of the way, the webhook settings tests need, and `settings` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKYARD_")}
    env.update(
        STOCKYARD_DATABASE_URL=services.database_url,
        STOCKYARD_REDIS_URL=services.redis_url,
        STOCKYARD_REDIS_KEY_PREFIX=services.redis_prefix,
        STOCKYARD_SECRET_KEY="test-secret-key-" + "x" * 32,
        STOCKYARD_IP_RATE_LIMIT_PER_MINUTE="1000000",
        STOCKYARD_LOGIN_RATE_LIMIT_PER_MINUTE="1000000",
        STOCKYARD_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE="1000000",
        STOCKYARD_LOG_LEVEL="WARNING",
        STOCKYARD_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        STOCKYARD_WEBHOOK_POLL_SECONDS="0.2",
    )
    env.update({f"STOCKYARD_{name.upper()}": value for name, value in settings.items()})
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_serve(
    env: Mapping[str, str], *, port: int, workers: int, cwd: Path
) -> asyncio.subprocess.Process:
    """Start `stockyard serve` and return once /health answers 200 (killed if it never does)."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stockyard.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        env=dict(env),
        cwd=cwd,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if (await client.get("/health")).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    server.kill()
    raise AssertionError("stockyard serve did not become healthy")
