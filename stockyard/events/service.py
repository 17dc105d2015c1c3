"""Appending events beside the changes that cause them, and reading them back as a feed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.audit_trail import current_request_id
from stockyard.core.database import Writes
from stockyard.core.ids import new_ids
from stockyard.core.pagination import encode_cursor
from stockyard.events import repository as events_repository
from stockyard.events.repository import NewEvent
from stockyard.events.schemas import EventPage, EventRead, EventType


async def publish(
    session: Writes, tenant_id: uuid.UUID, events: Sequence[tuple[EventType, dict[str, Any]]]
) -> None:
    """Write events in the caller's transaction: a change that rolls back leaves none."""
    request_id = current_request_id()
    await events_repository.add(
        session,
        [
            NewEvent(tenant_id, event_id, event_type.value, data, request_id)
            for (event_type, data), event_id in zip(events, new_ids(len(events)), strict=True)
        ],
    )


async def read_feed(
    session: AsyncSession,
    *,
    after: tuple[int, uuid.UUID] | None,
    types: Sequence[EventType],
    limit: int,
) -> EventPage:
    """The tenant's events in the order their transactions wrote them, from `after` on. A
    position handed out once stays valid: nothing is ever inserted before it."""
    rows = await events_repository.feed(
        session, after=after, types=[t.value for t in types], limit=limit + 1
    )
    page = rows[:limit]
    items = [
        EventRead(
            id=row["id"],
            type=row["type"],
            occurred_at=row["occurred_at"],
            data=json.loads(row["data"]),
            request_id=row["request_id"],
        )
        for row in page
    ]
    if page:
        next_cursor: str | None = encode_cursor(page[-1]["txid"], str(page[-1]["id"]))
    else:
        next_cursor = encode_cursor(str(after[0]), str(after[1])) if after else None
    return EventPage(items=items, next_cursor=next_cursor, has_more=len(rows) > limit)
