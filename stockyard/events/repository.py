"""All SQL of the event log: appending events, reading the feed, and its monthly partitions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core import partitions
from stockyard.core.database import Writes, fetch


@dataclass(frozen=True, slots=True)
class NewEvent:
    tenant_id: uuid.UUID
    id: uuid.UUID
    type: str
    data: dict[str, Any]
    request_id: str | None


# One statement however many events: arrays of ids, types and payloads, unnested server-side
# (a bulk batch can touch thousands of balances; a row per round trip would cost more than the
# batch itself).
# The same statement wakes the webhook dispatchers when the transaction commits (NOTIFY is
# sent at commit, never for a rollback), but only for a tenant with an endpoint to send to:
# every NOTIFY takes a database-wide lock at commit, which tenants without webhooks need not
# queue for.
NOTIFY_SUBSCRIBERS = """
    SELECT pg_notify('stockyard_webhooks', :tenant_text)
    WHERE EXISTS (SELECT FROM webhook_endpoint WHERE enabled)
"""
_ADD = f"""
    WITH added AS (
        INSERT INTO event (tenant_id, id, type, data, request_id)
        SELECT :tenant_id, e.id, e.type, e.data, :request_id
        FROM unnest(:ids::uuid[], :types::text[], :data::jsonb[]) AS e(id, type, data)
        RETURNING 1
    )
    {NOTIFY_SUBSCRIBERS}
"""


async def add(session: Writes, events: Sequence[NewEvent]) -> None:
    """Append in the session's transaction: the events commit or roll back with the change.
    The transaction's id (the feed's order) and its start time are filled in by PostgreSQL.
    The events of one call share their tenant and request."""
    if not events:
        return
    await fetch(
        session,
        _ADD,
        {
            "tenant_id": events[0].tenant_id,
            "tenant_text": str(events[0].tenant_id),
            "request_id": events[0].request_id,
            "ids": [event.id for event in events],
            "types": [event.type for event in events],
            "data": [json.dumps(event.data) for event in events],
        },
    )


# Only events of transactions that had finished when this statement's snapshot was taken:
# anything at or above the horizon may still commit, and would otherwise appear behind a
# position the reader has already passed.
_FEED = """
    SELECT id, type, occurred_at, data::text AS data, request_id, txid::text AS txid
    FROM event
    WHERE txid < pg_snapshot_xmin(pg_current_snapshot()) {filters}
    ORDER BY txid, id
    LIMIT :limit
"""


async def feed(
    session: AsyncSession,
    *,
    after: tuple[int, uuid.UUID] | None,
    types: Sequence[str],
    limit: int,
) -> list[asyncpg.Record]:
    filters = []
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        filters.append("AND (txid, id) > (:after_txid::text::xid8, :after_id)")
        params.update(after_txid=str(after[0]), after_id=after[1])
    if types:
        filters.append("AND type = ANY(:types)")
        params["types"] = list(types)
    return await fetch(session, _FEED.format(filters=" ".join(filters)), params)


async def ensure_partitions(session: AsyncSession, *, months_ahead: int = 3) -> list[str]:
    return await partitions.ensure_monthly_partitions(session, "event", months_ahead=months_ahead)


async def drop_partitions_before(session: AsyncSession, cutoff: datetime) -> list[str]:
    """Retention: whole months older than `cutoff` go. As the owner."""
    return await partitions.drop_partitions_before(session, "event", cutoff)
