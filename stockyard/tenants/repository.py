"""All SQL of the tenants domain."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from stockyard.tenants.models import Tenant

_SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")


async def set_current_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Scope the open transaction to one tenant. Transaction-local (`true`): it ends with the
    transaction, so a pooled connection never carries it into the next request."""
    await session.execute(_SET_TENANT, {"tenant_id": str(tenant_id)})


def scope_to_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Scope every transaction this session begins to one tenant, as its first statement.

    The setting is sent when the session first takes a connection, not now: a request that
    does CPU work before its first query (hashing a password) holds no pooled connection
    meanwhile. Still transaction-local, so the connection goes back to the pool clean."""

    def _set(_: Session, __: SessionTransaction, connection: Connection) -> None:
        connection.execute(_SET_TENANT, {"tenant_id": str(tenant_id)})

    event.listen(session.sync_session, "after_begin", _set)


@asynccontextmanager
async def tenant_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> AsyncIterator[AsyncSession]:
    """A short transaction of its own in one tenant, committed when the block ends: for the
    flows that must give their connection back while they wait on slow CPU work."""
    async with sessionmaker() as session, session.begin():
        scope_to_tenant(session, tenant_id)
        yield session


async def tenant_id_for_slug(session: AsyncSession, slug: str) -> uuid.UUID | None:
    result = await session.scalar(
        text("SELECT stockyard_tenant_id_for_slug(:slug)"), {"slug": slug}
    )
    return result if isinstance(result, uuid.UUID) else None


async def rate_limit_override(
    session: AsyncSession, tenant_id: uuid.UUID
) -> tuple[int | None, int | None]:
    row = (
        await session.execute(
            text("SELECT per_minute, burst FROM stockyard_tenant_rate_limit(:tenant_id)"),
            {"tenant_id": tenant_id},
        )
    ).first()
    return (row.per_minute, row.burst) if row else (None, None)


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)
