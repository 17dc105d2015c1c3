from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, JsonValue

from stockyard.core.pagination import Page


class EventType(StrEnum):
    STOCK_CHANGED = "stock.changed"
    STOCK_LOW = "stock.low"
    STOCK_OUT = "stock.out"
    STOCK_RESTOCKED = "stock.restocked"
    RESERVATION_CREATED = "reservation.created"
    RESERVATION_COMMITTED = "reservation.committed"
    RESERVATION_RELEASED = "reservation.released"
    RESERVATION_EXPIRED = "reservation.expired"
    PRODUCT_CREATED = "product.created"
    PRODUCT_UPDATED = "product.updated"
    PRODUCT_ARCHIVED = "product.archived"
    LOCATION_CREATED = "location.created"
    LOCATION_UPDATED = "location.updated"
    LOCATION_ARCHIVED = "location.archived"


class EventRead(BaseModel):
    id: uuid.UUID = Field(description="Time-ordered; receivers deduplicate on it.")
    type: EventType
    occurred_at: datetime = Field(description="When the writing transaction began.")
    data: dict[str, JsonValue]
    request_id: str | None = Field(description="The request that made the change, if any.")


class EventPage(Page[EventRead]):
    """A page of the feed. Unlike other lists, `next_cursor` is set whenever the page has
    events: it is where to resume, now or later, as `after`. `has_more` says whether more
    events are already waiting."""

    has_more: bool
