"""Background upkeep that no request pays for: expiring reservations, forgetting old
Idempotency-Keys, and the ledger audit behind `stockyard check`.

Each runs tenant by tenant as the app role: a definer look-up says which tenants have work,
and row-level security scopes every statement to the one being handled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.core import tenancy
from stockyard.idempotency import repository as idempotency_repository
from stockyard.inventory.ledger import repository as ledger_repository
from stockyard.inventory.ledger import service as ledger_service
from stockyard.tenants import repository as tenant_repository

log = structlog.get_logger()


async def sweep(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Expire overdue reservations (with their events) and delete expired idempotency keys, in
    every tenant. Returns (reservations expired, keys deleted)."""
    async with sessionmaker() as session, session.begin():
        expiring = await ledger_repository.tenants_with_expired_reservations(session)
        stale = await idempotency_repository.tenants_with_expired_keys(session)
    released = deleted = 0
    for tenant_id in expiring:
        async with sessionmaker() as session, session.begin():
            await tenancy.set_current_tenant(session, tenant_id)
            released += await ledger_repository.expire_all_reservations(session)
            await ledger_service.publish_stock_changes(session, tenant_id)
    for tenant_id in stale:
        async with sessionmaker() as session, session.begin():
            await tenancy.set_current_tenant(session, tenant_id)
            deleted += await idempotency_repository.delete_expired(session)
    if released or deleted:
        log.info("sweep_done", balances_released=released, idempotency_keys_deleted=deleted)
    return released, deleted


@dataclass(frozen=True, slots=True)
class Drift:
    tenant_id: uuid.UUID
    sku: str
    location: str
    on_hand: int
    ledger_on_hand: int
    reserved: int
    held: int


async def find_drift(session: AsyncSession, *, tenant_slug: str | None) -> list[Drift]:
    """Recompute every balance from its ledger and active reservations; list disagreements."""
    if tenant_slug is not None:
        tenant_id = await tenant_repository.tenant_id_for_slug(session, tenant_slug)
        tenants = [tenant_id] if tenant_id is not None else []
    else:
        tenants = await ledger_repository.tenant_ids(session)
    found: list[Drift] = []
    for tenant_id in tenants:
        async with session.begin_nested():
            await tenancy.set_current_tenant(session, tenant_id)
            rows = await ledger_repository.drift(session, tenant_id)
        found += [
            Drift(
                tenant_id=tenant_id,
                sku=row.sku,
                location=row.location,
                on_hand=row.on_hand,
                ledger_on_hand=row.ledger_on_hand,
                reserved=row.reserved,
                held=row.held,
            )
            for row in rows
        ]
    return found
