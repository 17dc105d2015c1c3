from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stockyard.core.pagination import Page


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    request_id: str | None
    actor_type: str
    actor_id: uuid.UUID | None
    action: str
    resource_type: str | None
    resource_id: str | None
    status: int | None
    details: dict[str, Any] | None


class AuditPage(Page[AuditEventRead]):
    pass


class TraceEvent(BaseModel):
    tenant_id: uuid.UUID
    tenant_slug: str | None
    occurred_at: datetime
    actor_type: str
    actor_id: uuid.UUID | None
    action: str
    resource_type: str | None
    resource_id: str | None
    status: int | None


class TracedChange(BaseModel):
    """An event the request wrote (its type and id; its data stays with the tenant)."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    type: str
    occurred_at: datetime


class TracedDelivery(BaseModel):
    """A webhook delivery of one of those events: where it stands, not where it went."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    event_id: uuid.UUID
    webhook_id: uuid.UUID
    state: str
    attempts: int
    last_status: int | None


class RequestTrace(BaseModel):
    request_id: str
    events: list[TraceEvent] = Field(description="The request's audit events.")
    changes: list[TracedChange] = Field(description="The events it wrote to the event log.")
    deliveries: list[TracedDelivery] = Field(description="Their webhook deliveries.")
    truncated: bool
