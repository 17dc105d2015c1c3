"""Where tenancy is enforced: one transaction-local setting, and the row-level security
policy on every tenant table that reads it.

A request's transaction is scoped to the tenant of its verified token (auth/pipeline.py) by
`scope_to_tenant`; the database then shows and accepts only that tenant's rows. The API's
role cannot bypass row-level security, and FORCE makes the policy bind the tables' owner too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

# The tenant the current transaction is scoped to, or NULL when it is scoped to none (then a
# policy matches no row at all).
CURRENT_TENANT = "(SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)"

_SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
_SET_TENANT_DRIVER_SQL = "SELECT set_config('app.tenant_id', $1, true)"


def tenant_policy_statements(table: str, *, column: str = "tenant_id") -> list[str]:
    """The DDL that walls a table off by tenant (migrations, and each new partition)."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} TO PUBLIC "
        f"USING ({column} = {CURRENT_TENANT}) WITH CHECK ({column} = {CURRENT_TENANT})",
    ]


async def set_current_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Scope the open transaction to one tenant. Transaction-local (`true`): it ends with the
    transaction, so a pooled connection never carries it into the next request."""
    await session.execute(_SET_TENANT, {"tenant_id": str(tenant_id)})


_TENANT_INFO_KEY = "stockyard.tenant_id"


def scope_to_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Scope every transaction this session begins to one tenant, as its first statement.

    The setting is sent when the session first takes a connection, not now: a request that
    does CPU work before its first query (hashing a password) holds no pooled connection
    meanwhile. Still transaction-local, so the connection goes back to the pool clean."""
    session.info[_TENANT_INFO_KEY] = str(tenant_id)


# One listener for every session, installed once: registering one per session cost each
# request an event registration. It sends the setting as a driver-level statement (no SQL
# compilation), through SQLAlchemy's connection so that it runs inside the transaction the
# driver has begun.
@event.listens_for(Session, "after_begin")
def _send_tenant_setting(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    tenant_id = session.info.get(_TENANT_INFO_KEY)
    if tenant_id is not None:
        connection.exec_driver_sql(_SET_TENANT_DRIVER_SQL, (tenant_id,))


async def begin_in_tenant(
    connection: asyncpg.Connection, tenant_id: uuid.UUID, *, read_only: bool
) -> None:
    """Begin a transaction on a driver connection, scoped to one tenant, in one round trip:
    a simple-query batch, so the tenant is written into the text, which only a `uuid.UUID`'s
    own rendering (hex digits and dashes) may be; anything else is refused."""
    if not isinstance(tenant_id, uuid.UUID):
        raise TypeError("a tenant is scoped by its uuid.UUID")
    begin = "BEGIN READ ONLY" if read_only else "BEGIN"
    await connection.execute(f"{begin}; SELECT set_config('app.tenant_id', '{tenant_id}', true)")


@asynccontextmanager
async def tenant_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> AsyncIterator[AsyncSession]:
    """A short transaction of its own in one tenant, committed when the block ends: for the
    flows that must give their connection back while they wait on slow CPU work."""
    async with sessionmaker() as session, session.begin():
        scope_to_tenant(session, tenant_id)
        yield session
