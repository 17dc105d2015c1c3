"""What every benchmark needs: a real `stockyard serve`, load from a separate process (wrk
when installed), a signed-up tenant and a throwaway database."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import driver, wrk
from bench.stats import summarize
from stockyard.core.database import to_libpq_dsn
from stockyard.core.embedded import EmbeddedServices
from stockyard.core.settings import Settings
from stockyard.migrations.runner import migrate

PASSWORD = "bench passphrase 123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    env: dict[str, str], port: int, workers: int, log: Path, tree: Path | None = None
) -> subprocess.Popen[bytes]:
    """`stockyard serve` from this checkout, or from `tree` (another checkout): run from that
    directory with it first on the path, since `python -m` puts the working directory ahead
    of PYTHONPATH and of the installed package."""
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stockyard.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tree,
    )


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start")


def load(plan: driver.Plan) -> dict[str, Any]:
    """Drive load from a separate process (wrk when installed, else the Python driver) and
    return {requests, elapsed, p50_ms, p99_ms, non_2xx}."""
    if wrk.available():
        return wrk.run(plan)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=driver.run, args=(plan, queue))
    process.start()
    raw: dict[str, Any] = json.loads(queue.get(timeout=plan.duration + 120))
    process.join(timeout=30)
    row = summarize("", raw["latencies"], raw["elapsed"])
    non_2xx = sum(n for status, n in raw["statuses"].items() if not str(status).startswith("2"))
    return {
        "requests": row["requests"],
        "elapsed": raw["elapsed"],
        "p50_ms": row["p50_ms"],
        "p99_ms": row["p99_ms"],
        "non_2xx": non_2xx,
    }


def signup(url: str, slug: str) -> tuple[uuid.UUID, str]:
    email = f"owner@{slug}.example.com"
    created = httpx.post(
        f"{url}/api/v1/tenants",
        json={"name": slug, "slug": slug, "owner_email": email, "owner_password": PASSWORD},
        timeout=30,
    )
    created.raise_for_status()
    token = httpx.post(
        f"{url}/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": PASSWORD, "tenant": slug},
        timeout=30,
    )
    token.raise_for_status()
    return uuid.UUID(created.json()["id"]), str(token.json()["access_token"])


def create_database(admin_url: str, name: str, drop: bool = False) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(to_libpq_dsn(admin_url))
        try:
            if drop:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(run())


@dataclass(frozen=True, slots=True)
class BenchStack:
    """A migrated throwaway database and Redis, and how a server reaches them."""

    workdir: Path
    admin_url: str
    settings: Settings
    server_env: dict[str, str]


@contextmanager
def bench_stack(prefix: str) -> Iterator[BenchStack]:
    """The services named by STOCKYARD_BENCH_DATABASE_URL (a superuser URL) and
    STOCKYARD_BENCH_REDIS_URL, else embedded ones; a fresh database on them, migrated, and
    dropped at the end. `server_env` starts `stockyard serve` on it with limits out of the way."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    embedded = EmbeddedServices(workdir)
    admin_url = os.environ.get("STOCKYARD_BENCH_DATABASE_URL") or embedded.start_postgres()
    redis_url = os.environ.get("STOCKYARD_BENCH_REDIS_URL") or embedded.start_redis()
    name = f"stockyard_bench_{secrets.token_hex(4)}"
    create_database(admin_url, name)
    database_url = make_url(admin_url).set(database=name).render_as_string(False)
    secret = secrets.token_urlsafe(48)
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secret,
        redis_key_prefix=f"{name}:",
    )
    try:
        migrate(settings)
        yield BenchStack(
            workdir=workdir,
            admin_url=admin_url,
            settings=settings,
            server_env={
                "STOCKYARD_DATABASE_URL": database_url,
                "STOCKYARD_REDIS_URL": redis_url,
                "STOCKYARD_SECRET_KEY": secret,
                "STOCKYARD_REDIS_KEY_PREFIX": f"{name}:",
                "STOCKYARD_MIGRATE_ON_START": "false",
                "STOCKYARD_RATE_LIMIT_PER_MINUTE": "1000000000",
                "STOCKYARD_RATE_LIMIT_BURST": "1000000000",
                "STOCKYARD_IP_RATE_LIMIT_PER_MINUTE": "1000000000",
                "STOCKYARD_LOGIN_RATE_LIMIT_PER_MINUTE": "1000000000",
                "STOCKYARD_DB_POOL_SIZE": "20",
            },
        )
    finally:
        with suppress(Exception):
            create_database(admin_url, name, drop=True)
        embedded.stop()
