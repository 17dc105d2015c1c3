from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

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


class RequestTrace(BaseModel):
    request_id: str
    events: list[TraceEvent]
    truncated: bool
