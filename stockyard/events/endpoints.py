"""The event feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from stockyard.auth.pipeline import READS_INVENTORY, TenantSession
from stockyard.core.pagination import DEFAULT_PAGE_SIZE, Limit, position_cursor
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.events import service as events_service
from stockyard.events.schemas import EventPage, EventType

router = APIRouter(prefix="/api/v1", tags=["events"])


@router.get(
    "/events",
    response_model=EventPage,
    responses=error_responses(*AUTHENTICATED),
    dependencies=[READS_INVENTORY],
    summary="The tenant's events, oldest first, from a position on",
)
async def list_events(
    session: TenantSession,
    after: Annotated[
        str | None,
        Query(
            max_length=512,
            description="`next_cursor` of an earlier page: resume after it (omit: start at "
            "the oldest event kept).",
        ),
    ] = None,
    event_types: Annotated[
        list[EventType] | None, Query(alias="type", description="Only these types.")
    ] = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
) -> EventPage:
    return await events_service.read_feed(
        session, after=position_cursor(after), types=event_types or [], limit=limit
    )
