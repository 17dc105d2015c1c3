"""All SQL of the tenants domain."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.tenants.models import Tenant


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


async def share_lock_live_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant (the session's own) is not deleted, share-locked until the
    transaction ends: a deletion, which locks the row first, waits for a sign-in under this
    lock (and then revokes its session with the others), or makes it see the tenant gone."""
    deleted = await session.execute(
        text("SELECT deleted_at FROM tenant WHERE id = :tenant_id FOR SHARE"),
        {"tenant_id": tenant_id},
    )
    row = deleted.first()
    return row is not None and row.deleted_at is None
