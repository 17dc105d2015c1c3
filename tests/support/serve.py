"""The real `stockyard serve` command in a process of its own, on a free loopback port."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


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
