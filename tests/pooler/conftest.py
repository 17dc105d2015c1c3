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

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from bench.pgbouncer import running_pgbouncer
from stockyard.core.database import app_url, owner_url, to_libpq_dsn
from stockyard.core.settings import APP_ROLE, Settings
from stockyard.migrations.runner import migrate
from tests.conftest import make_settings, running_app
from tests.support.services import TestServices

SERVER_CONNECTIONS = 4


@dataclass(frozen=True)
class Bouncer:
    host: str
    port: int


@pytest.fixture(scope="session")
def pgbouncer(services: TestServices) -> Iterator[Bouncer]:
    if shutil.which("pgbouncer") is None:
        pytest.fail("the pooler group needs pgbouncer: apt-get install pgbouncer")
    target = make_url(services.database_url)
    if not target.host:
        pytest.fail("the pooler group needs STOCKYARD_TEST_DATABASE_URL naming PostgreSQL on TCP")
    with running_pgbouncer(
        host=target.host,
        port=target.port or 5432,
        users=[APP_ROLE, str(target.username)],
        server_connections=SERVER_CONNECTIONS,
    ) as port:
        yield Bouncer(host="127.0.0.1", port=port)


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
