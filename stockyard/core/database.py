"""Engines and sessions.

The API talks to PostgreSQL only as `stockyard_app`, a role that cannot bypass row-level
security; the owner URL is used by migrations and operator commands alone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from types import TracebackType
from typing import Any, Protocol, Self

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.exc import StaleDataError

from stockyard.core.errors import AppError, PreconditionFailed
from stockyard.core.settings import APP_ROLE, Settings
from stockyard.core.tenancy import begin_in_tenant


def to_async_url(url: str | URL) -> URL:
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql+asyncpg")


def to_libpq_dsn(url: str | URL) -> str:
    """A plain `postgresql://` DSN for asyncpg.connect (COPY, tests, operator tools)."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def owner_url(settings: Settings) -> URL:
    if settings.database_url is None:
        raise RuntimeError("STOCKYARD_DATABASE_URL is not set and no embedded database runs")
    return to_async_url(settings.database_url)


def app_url(settings: Settings) -> URL:
    """The URL of the least-privileged role: given explicitly, or the owner URL re-rolled."""
    if settings.app_database_url is not None:
        return to_async_url(settings.app_database_url)
    password = (
        settings.app_database_password.get_secret_value()
        if settings.app_database_password
        else None
    )
    return owner_url(settings).set(username=APP_ROLE, password=password)


def listen_dsn(settings: Settings) -> str | None:
    """Where the webhook dispatcher LISTENs. A LISTEN lives on one server connection, which a
    transaction pooler hands to other clients between transactions: behind one, only an
    explicit direct URL will do, and without it the dispatcher polls."""
    if settings.webhook_listen_url is not None:
        return to_libpq_dsn(settings.webhook_listen_url)
    if settings.database_pooler == "transaction":
        return None
    return to_libpq_dsn(app_url(settings))


def _pooler_arguments(settings: Settings) -> dict[str, Any]:
    """Behind PgBouncer in transaction mode, consecutive transactions of one client connection
    run on different server connections, so a statement prepared in one is unknown to the
    next. asyncpg then keeps no statement cache (its own statements are unnamed, used in the
    transaction that parses them), and the ones SQLAlchemy prepares get unique names, so two
    clients' statements never collide on a server connection."""
    if settings.database_pooler != "transaction":
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__stockyard_{uuid.uuid4().hex}__",
    }


def create_engine(url: URL, settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0,
        # No ping before every checkout (a round trip per request): a connection that died
        # with a database restart fails its request as 503 `database_unavailable`, and the
        # disconnect invalidates the pool, so the next requests get fresh connections.
        pool_pre_ping=False,
        pool_timeout=settings.db_timeout_seconds,
        connect_args={
            "timeout": settings.db_timeout_seconds,
            "command_timeout": max(settings.db_timeout_seconds * 6, 30.0),
            "server_settings": {"application_name": "stockyard"},
            **_pooler_arguments(settings),
        },
    )


UNIQUE_VIOLATION = "23505"


async def insert_unique(session: AsyncSession, row: object, *, taken: AppError) -> None:
    """Insert one row inside a savepoint; a unique violation raises `taken` (a 409) and leaves
    the request's transaction, and its tenant setting, usable."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        raise taken from None


class Versioned(Protocol):
    version: int
    updated_at: datetime


async def save_new_version(
    session: AsyncSession,
    row: Versioned,
    *,
    at: datetime | None = None,
    stale: AppError | None = None,
) -> None:
    """Write a change to a versioned row as ONE guarded statement: the models map `version`
    as SQLAlchemy's version counter, so the flush is `UPDATE … SET version = v + 1 … WHERE id
    = … AND version = v`, v being the version the row was read at (and checked against
    If-Match). A writer that committed first leaves that WHERE matching nothing: the caller's
    precondition no longer holds, and it gets `stale` (412 by default), never a lost update."""
    row.updated_at = at or datetime.now(UTC)
    try:
        await session.flush()
    except StaleDataError:
        raise (stale or PreconditionFailed()) from None


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def _end_open_transaction(connection: asyncpg.Connection) -> None:
    """What a driver pool does to a connection given back: ends a transaction left open
    (a request cut off mid-statement). Nothing else: its transactions set nothing but their
    transaction-local tenant, so asyncpg's default reset (RESET ALL, UNLISTEN, CLOSE ALL,
    advisory unlock: one more round trip on every release) has nothing to undo."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


def create_driver_pool(url: URL, settings: Settings) -> asyncpg.Pool:
    """A driver's own pool for the hot routes (the app has one for `TenantReads`, one for
    `TenantWrites`), as the same role as the engine. It opens connections on demand (none at
    start, so the API starts while the database is away) and replaces one that died on its
    next checkout. Await it once before use."""
    pooler = _pooler_arguments(settings)
    return asyncpg.create_pool(
        to_libpq_dsn(url),
        min_size=0,
        max_size=settings.db_pool_size,
        max_inactive_connection_lifetime=60.0,
        reset=_end_open_transaction,
        timeout=settings.db_timeout_seconds,
        command_timeout=max(settings.db_timeout_seconds * 6, 30.0),
        server_settings={"application_name": "stockyard"},
        **({"statement_cache_size": 0} if pooler else {}),
    )


class TransactionRolledBack(RuntimeError):
    """A commit that PostgreSQL answered with a rollback: nothing of the transaction stays."""


# What must hold before any request transaction commits, over what the transaction noted in
# its `info` (the ledger registers one: no stock change without its events). Checked for the
# ORM sessions by the listener below and for `TenantWrites` by its commit: one rule for both.
CommitCheck = Callable[[dict[str, Any]], None]
_COMMIT_CHECKS: list[CommitCheck] = []


def check_before_commit(check: CommitCheck) -> CommitCheck:
    """Register `check`, which raises to refuse a commit (the transaction then rolls back)."""
    _COMMIT_CHECKS.append(check)
    return check


@event.listens_for(Session, "before_commit")
def _run_commit_checks(session: Session) -> None:
    for check in _COMMIT_CHECKS:
        check(session.info)


async def _give_back_broken(pool: asyncpg.Pool, connection: asyncpg.Connection) -> None:
    """Give back a connection whose statement failed outside a transaction that could be
    rolled back (BEGIN itself, COMMIT, ROLLBACK, a self-scoped statement): closed, not kept.
    A failure there is most often the connection's own (the server shut down, a cut socket),
    and asyncpg may still think such a connection usable until its socket closes: handed out
    again, its next statement fails with InternalClientError. A new connection costs less
    than a request answered with a 500."""
    connection.terminate()
    await pool.release(connection)


class _DriverTransaction:
    """A transaction in one tenant on a connection of a driver pool: what the hot routes
    run on, in place of an ORM session whose machinery (session and transaction objects, a
    greenlet switch per statement, connection events, BEGIN and the tenant setting as two
    round trips) cost more CPU than their statements. It begins at the first statement, as
    BEGIN and the transaction-local tenant setting in one round trip, so row-level security
    applies to every statement exactly as it does under a session. `close` commits or rolls
    back and gives the connection back; as a context manager, it commits when the block
    ends and rolls back when it raises."""

    __slots__ = ("_connection", "_pool", "_timeout", "tenant_id")
    _read_only = False

    def __init__(self, pool: asyncpg.Pool, tenant_id: uuid.UUID, *, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._connection: asyncpg.Connection | None = None
        self.tenant_id = tenant_id

    async def connection(self) -> asyncpg.Connection:
        if self._connection is None:
            connection = await self._pool.acquire(timeout=self._timeout)
            try:
                await begin_in_tenant(connection, self.tenant_id, read_only=self._read_only)
            except BaseException:
                await _give_back_broken(self._pool, connection)
                raise
            self._connection = connection
        return self._connection

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close(commit=exc_type is None)

    @asynccontextmanager
    async def _connection_alone(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool for one statement outside this transaction, given back
        closed if that statement failed (see `_give_back_broken`)."""
        connection = await self._pool.acquire(timeout=self._timeout)
        try:
            yield connection
        except BaseException:
            await _give_back_broken(self._pool, connection)
            raise
        await self._pool.release(connection)

    async def close(self, *, commit: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            status = await connection.execute("COMMIT" if commit else "ROLLBACK")
        except BaseException:
            await _give_back_broken(self._pool, connection)
            raise
        await self._pool.release(connection)
        # PostgreSQL answers COMMIT in a transaction that has failed (a statement error caught
        # and not re-raised) by rolling it back, with no error: that must not become a 2xx.
        if commit and status != "COMMIT":
            raise TransactionRolledBack("the transaction had failed; COMMIT rolled it back")


class TenantReads(_DriverTransaction):
    """The hot read routes' transaction: READ ONLY, so a write here is an error, never a
    change."""

    __slots__ = ()
    _read_only = True

    async def fetch_one_self_scoped(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> asyncpg.Record | None:
        """A row of one statement that scopes itself to the tenant: it reads through an
        `*_in_tenant` function, which sets the transaction-local tenant before its query. With
        no transaction open yet, the statement is its own (implicit, single-statement)
        transaction: one round trip in place of BEGIN with the tenant, the read and COMMIT;
        not READ ONLY then, which the fixed SELECT such a function runs does not need.
        Inside an open one, it runs there like any other."""
        if self._connection is not None:
            return await fetch_one(self, sql, params)
        async with self._connection_alone() as connection:
            row: asyncpg.Record | None = await connection.fetchrow(*_bound(sql, params))
            return row

    async def fetch_self_scoped(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[asyncpg.Record]:
        """The rows of such a statement, likewise."""
        if self._connection is not None:
            return await fetch(self, sql, params)
        async with self._connection_alone() as connection:
            return list(await connection.fetch(*_bound(sql, params)))


class TenantWrites(_DriverTransaction):
    """The ledger write routes' transaction (movements, transfers, bulk ingest). Like an ORM
    session it carries `info`, where the transaction notes what it changed, and it commits
    only when every registered commit check passes; a failed check rolls it back."""

    __slots__ = ("info",)

    def __init__(self, pool: asyncpg.Pool, tenant_id: uuid.UUID, *, timeout: float) -> None:
        super().__init__(pool, tenant_id, timeout=timeout)
        self.info: dict[str, Any] = {}

    async def close(self, *, commit: bool) -> None:
        if commit:
            try:
                for check in _COMMIT_CHECKS:
                    check(self.info)
            except BaseException:
                await super().close(commit=False)
                raise
        await super().close(commit=commit)


# Where a repository's statements run: the request's ORM session, or a hot route's driver
# transaction. Each is one transaction scoped to the caller's tenant.
Reads = AsyncSession | TenantReads | TenantWrites
Writes = AsyncSession | TenantWrites


# The hot reads skip SQLAlchemy's statement machinery (compilation, result processing, a
# greenlet switch per statement), which cost more CPU than the queries themselves: they run
# on the asyncpg connection under the request's session, inside its transaction, so the
# tenant setting and row-level security apply exactly as they do to every other statement.


_DRIVER_CONNECTION_KEY = "stockyard.driver_connection"


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of the session's transaction, begun (and scoped to its tenant
    by the after_begin hook) if it was not yet; the session's pending changes are flushed
    first, so the driver's statements see them.

    Found once per transaction and kept in the session until that transaction ends: asking
    the session each time took two greenlet switches and a connection proxy per statement
    (~10 % of a receipt's CPU, ten statements a receipt)."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    # Kept with the (outermost) transaction it belongs to, and used only while that same
    # transaction is the session's and can still run statements: the next transaction may
    # run on another connection, and a flush that failed outside a savepoint leaves its
    # transaction open but inactive until the caller rolls back; the session then refuses
    # (PendingRollbackError), and so must we, rather than run a statement outside any
    # transaction and without its tenant.
    transaction = session.sync_session.get_transaction()
    known: tuple[SessionTransaction, asyncpg.Connection] | None = session.info.get(
        _DRIVER_CONNECTION_KEY
    )
    if known is not None and known[0] is transaction and transaction.is_active:
        return known[1]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    session.info[_DRIVER_CONNECTION_KEY] = (session.sync_session.get_transaction(), driver)
    return driver


_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def _positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`... WHERE sku = :sku` -> (`... WHERE sku = $1`, ("sku",)), as text() reads binds
    (a `::type` cast is not one); asyncpg then prepares and caches the statement."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _BIND.sub(number, sql), tuple(names)


def _bound(sql: str, params: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The driver's arguments for one statement: its positional text, then its values."""
    statement, names = _positional(sql)
    return (statement, *((params or {})[name] for name in names))


async def connection_of(reads: Reads) -> asyncpg.Connection:
    """The driver connection of a transaction, begun (in its tenant) if it was not yet."""
    if isinstance(reads, AsyncSession):
        return await driver_connection(reads)
    return await reads.connection()


async def fetch(
    reads: Reads, sql: str, params: Mapping[str, Any] | None = None
) -> list[asyncpg.Record]:
    """Rows of one statement with `:name` binds, run by the driver in the transaction of
    `reads` (a session's or a read route's)."""
    connection = await connection_of(reads)
    return list(await connection.fetch(*_bound(sql, params)))


async def fetch_one(
    reads: Reads, sql: str, params: Mapping[str, Any] | None = None
) -> asyncpg.Record | None:
    connection = await connection_of(reads)
    return await connection.fetchrow(*_bound(sql, params))


async def execute_many(session: Writes, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """One statement with `:name` binds, once per row, by the driver in the transaction of
    `session` (asyncpg sends them as one pipeline)."""
    statement, names = _positional(sql)
    connection = await connection_of(session)
    await connection.executemany(statement, [[row[name] for name in names] for row in rows])
