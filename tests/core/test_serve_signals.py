"""`stockyard serve` on its embedded services: SIGTERM and SIGINT stop everything it started,
and the server's own limits hold on a real socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.serve import free_port, start_serve


def _started_from(data_dir: Path) -> list[psutil.Process]:
    """Processes whose command line or open files name the data directory."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(data_dir) in part for part in process.info["cmdline"] or []):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


async def _serve(data_dir: Path, port: int, workers: int) -> asyncio.subprocess.Process:
    """On the embedded services under `data_dir` (nothing from this environment's config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKYARD_")}
    env.update(STOCKYARD_DATA_DIR=str(data_dir), STOCKYARD_LOG_LEVEL="WARNING")
    return await start_serve(env, port=port, workers=workers, cwd=data_dir.parent)


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 1)],
    ids=["sigterm-1-worker", "sigterm-2-workers", "sigint-1-worker"],
)
async def test_a_stop_signal_stops_the_embedded_services_too(
    tmp_path: Path, signum: int, workers: int
) -> None:
    data_dir = tmp_path / "data"
    server = await _serve(data_dir, free_port(), workers)
    try:
        children = psutil.Process(server.pid).children(recursive=True)
        assert _started_from(data_dir), "the embedded services should run under the data dir"
        server.send_signal(signum)
        exit_status = await asyncio.wait_for(server.wait(), 60)
        if signum == signal.SIGTERM:
            assert exit_status == 0  # asked to stop, stopped cleanly
        psutil.wait_procs(children, timeout=15)
        left = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [p.cmdline() for p in left]
        assert not _started_from(data_dir)
    finally:
        if server.returncode is None:
            server.kill()


async def test_oversized_headers_are_refused_and_idle_connections_closed(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = await _serve(tmp_path / "data", port, 1)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(1024):  # 1 MiB of headers, far over the 16 KiB default
                writer.write(b"X-Padding: " + b"a" * 1010 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass  # the server closed the connection mid-flood: refused
        try:
            answer = await asyncio.wait_for(reader.read(200), 5)
        except ConnectionError:
            answer = b""
        writer.transport.abort()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer
        assert time.monotonic() - started < 5
        # One header over the limit, sent whole: parsed, measured, refused in the envelope.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17_000 + b"\r\n\r\n")
        await writer.drain()
        head, _, body = (await asyncio.wait_for(reader.read(), 5)).partition(b"\r\n\r\n")
        writer.transport.abort()
        assert head.startswith(b"HTTP/1.1 431 "), head
        error = json.loads(body)["error"]
        assert error["code"] == "headers_too_large"
        assert f"x-request-id: {error['request_id']}".encode() in head
        # A head just under the limit is served.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            near_limit = await client.get("/livez", headers={"X-Big": "a" * 15_000})
            assert near_limit.status_code == 200
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/livez")).status_code == 200
        # An idle keep-alive connection is closed after STOCKYARD_KEEP_ALIVE_SECONDS (5).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        idle_started = time.monotonic()
        while await asyncio.wait_for(reader.read(4096), 15):
            pass  # the rest of the response, then end of stream when the server hangs up
        assert 4 < time.monotonic() - idle_started < 10
        writer.transport.abort()
    finally:
        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.wait(), 60)
