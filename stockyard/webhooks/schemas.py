from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from stockyard.core.pagination import Page
from stockyard.core.schemas import NO_NUL, JsonBool, RequestBody
from stockyard.core.timestamps import Instant
from stockyard.events.schemas import EventType

MAX_PATTERNS = 50
TEST_EVENT_TYPE = "webhook.test"


_EVENT_TYPES = frozenset(event_type.value for event_type in EventType)


def _check_pattern(pattern: str) -> str:
    """An event type, `<family>.*` for every type of a family, or `*` for all."""
    if pattern == "*" or pattern in _EVENT_TYPES:
        return pattern
    family, _, rest = pattern.partition(".")
    if rest == "*" and any(t.value.startswith(family + ".") for t in EventType):
        return pattern
    raise ValueError(f"{pattern!r} is no event type, `<family>.*` or `*`")


EventPattern = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["stock.changed", "stock.*", "*"]),
    AfterValidator(_check_pattern),
]
WebhookUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        pattern=r"^[hH][tT][tT][pP][sS]?://[^\s\x00]+$",
        description="An http(s) URL that resolves to a public address.",
        examples=["https://hooks.example.com/stockyard"],
    ),
]
Description = Annotated[str, Field(max_length=500, pattern=NO_NUL)]


def _distinct(patterns: list[str] | None) -> list[str] | None:
    return None if patterns is None else list(dict.fromkeys(patterns))


class WebhookCreate(RequestBody):
    url: WebhookUrl
    events: list[EventPattern] = Field(min_length=1, max_length=MAX_PATTERNS)
    description: Description | None = None

    _dedupe = field_validator("events")(_distinct)


class WebhookUpdate(RequestBody):
    """The fields sent change; `enabled: true` turns a disabled endpoint back on (its pending
    deliveries resume)."""

    url: WebhookUrl | None = None
    events: list[EventPattern] | None = Field(default=None, min_length=1, max_length=MAX_PATTERNS)
    description: Description | None = None
    enabled: JsonBool | None = None

    _dedupe = field_validator("events")(_distinct)


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    url: str
    events: list[str] = Field(validation_alias="event_types")
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the endpoint was disabled: `gone` (it answered 410), `failing` "
        "(deliveries failed for days), `admin`."
    )
    failing_since: datetime | None = Field(
        description="When deliveries began failing with no success since; null when healthy."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the secret replaced by the last rotation signs too."
    )
    version: int
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="The signing secret (`whsec_…`). Shown only this once.")


class WebhookSecret(BaseModel):
    secret: str = Field(description="The new signing secret. Shown only this once.")
    previous_secret_expires_at: datetime = Field(
        description="Until then deliveries carry signatures under both secrets."
    )


class WebhookPage(Page[WebhookRead]):
    pass


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AttemptRead(BaseModel):
    attempt: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    error: str | None = Field(description="Why no status: `timeout`, `connection failed`, …")


class DeliveryRead(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID = Field(description="Sent as `webhook-id`: the same on every attempt.")
    event_type: str
    state: DeliveryState
    next_attempt_at: datetime | None = Field(description="When the next attempt is due.")
    created_at: datetime
    finished_at: datetime | None
    attempts: list[AttemptRead]


class DeliveryPage(Page[DeliveryRead]):
    pass


class ReplayRequest(RequestBody):
    after: Instant = Field(description="Re-send the events that occurred from then on.")
    until: Instant | None = Field(
        default=None, description="…and before this time (omit: until now)."
    )


class ReplayResult(BaseModel):
    queued: int = Field(description="Deliveries queued: one per matching event.")


class TestDelivery(BaseModel):
    delivery_id: uuid.UUID
    event_id: uuid.UUID
