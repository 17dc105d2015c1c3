"""The `pooler` group: the API through PgBouncer in transaction pooling mode, four server
connections, with STOCKYARD_DATABASE_POOLER=transaction. PgBouncer 1.18 (Debian's) does not
track prepared statements, so anything that leaves one on a server connection breaks here.

The tests of this directory's modules are the suite's own isolation, race and token tests,
imported and run again against an app whose every database connection goes through PgBouncer
(the `app_and_client` and `settings` fixtures below replace the suite's for this directory).
Run with `pytest -m pooler` (`.ci/run` does, after installing pgbouncer); it needs
STOCKYARD_TEST_DATABASE_URL to name a PostgreSQL on TCP, which PgBouncer can reach.
"""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from stockyard.core.database import app_url, owner_url, to_libpq_dsn
from stockyard.core.settings import APP_ROLE, Settings
from stockyard.migrations.runner import migrate
from tests.conftest import make_settings, running_app
from tests.support.serve import free_port
from tests.support.services import TestServices

SERVER_CONNECTIONS = 4


@dataclass(frozen=True)
class Bouncer:
    host: str
    port: int


def _unprivileged_user() -> str:
    # PgBouncer refuses to run as root.
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user to run pgbouncer as")


@pytest.fixture(scope="session")
def pgbouncer(services: TestServices) -> Iterator[Bouncer]:
    binary = shutil.which("pgbouncer")
    if binary is None:
        pytest.fail("the pooler group needs pgbouncer: apt-get install pgbouncer")
    target = make_url(services.database_url)
    if not target.host:
        pytest.fail("the pooler group needs STOCKYARD_TEST_DATABASE_URL naming PostgreSQL on TCP")
    # Not under pytest's temporary root: that is private to root, and PgBouncer runs as
    # another user.
    workdir = Path(tempfile.mkdtemp(prefix="stockyard-pgbouncer-"))
    workdir.chmod(0o777)
    port = free_port()
    (workdir / "users.txt").write_text(f'"{APP_ROLE}" ""\n"{target.username}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""
[databases]
* = host={target.host} port={target.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_db_connections = {SERVER_CONNECTIONS}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
"""
    )
    for path in workdir.iterdir():
        path.chmod(0o666)
    process = subprocess.Popen(
        [binary, "-u", _unprivileged_user(), str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = workdir / "pgbouncer.log"
                    said = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {said}") from None
                time.sleep(0.1)
        yield Bouncer(host="127.0.0.1", port=port)
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(services: TestServices, pgbouncer: Bouncer) -> Settings:
    """The suite's settings with every database connection of the app through PgBouncer. The
    schema is migrated by the suite's own `settings` fixture, directly (DDL needs no pooler)."""
    direct = make_url(services.database_url)
    through = direct.set(host=pgbouncer.host, port=pgbouncer.port)
    migrate(make_settings(services))
    return make_settings(
        services,
        database_url=through.render_as_string(False),
        database_pooler="transaction",
        db_pool_size=20,  # more client connections than PgBouncer has server connections
    )


@pytest.fixture(scope="session")
async def app_and_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


# The tests' own connections (checking balances, ledgers, settings as the app role or the
# owner) go to PostgreSQL directly, as before: only the API is under test through the pooler.
@pytest.fixture
async def app_db(services: TestServices) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(to_libpq_dsn(app_url(make_settings(services))))
    yield connection
    await connection.close()


@pytest.fixture
async def owner_db(services: TestServices) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(to_libpq_dsn(owner_url(make_settings(services))))
    yield connection
    await connection.close()
