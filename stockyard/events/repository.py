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
from stockyard.core.database import execute_many, fetch


@dataclass(frozen=True, slots=True)
class NewEvent:
    tenant_id: uuid.UUID
    id: uuid.UUID
    type: str
    data: dict[str, Any]
    request_id: str | None


_ADD = (
    "INSERT INTO event (tenant_id, id, type, data, request_id) "
    "VALUES (:tenant_id, :id, :type, :data, :request_id)"
)


async def add(session: AsyncSession, events: Sequence[NewEvent]) -> None:
    """Append in the session's transaction: the events commit or roll back with the change.
    The transaction's id (the feed's order) and its start time are filled in by PostgreSQL."""
    if not events:
        return
    await execute_many(
        session,
        _ADD,
        [
            {
                "tenant_id": event.tenant_id,
                "id": event.id,
                "type": event.type,
                "data": json.dumps(event.data),
                "request_id": event.request_id,
            }
            for event in events
        ],
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
