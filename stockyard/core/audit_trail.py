"""Writing the audit trail: what changed, who asked, in which request.

Every domain writes to it, as every domain logs, so it lives here; reading it (the tenant's
audit log, the support trace, partition upkeep) is the `audit` package's business.

A change and its event share the request's transaction, so a rolled-back change leaves no
event. Denials worth keeping (failed sign-ins, 403s, conflicts) are written in a transaction
of their own (`record_apart`), because the request's own transaction is about to roll back.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import DateTime, Integer, String, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from stockyard.core import tenancy
from stockyard.core.database import Writes, execute_many
from stockyard.core.ids import new_id
from stockyard.core.models import Base
from stockyard.core.principal import AccessClaims, PrincipalKind

log = structlog.get_logger()

# Events of no tenant (a support engineer's own lookups) are filed under this id.
PLATFORM_TENANT_ID = uuid.UUID(int=0)


class AuditEvent(Base):
    """Who did what, in which request. Partitioned by month (migration 0003)."""

    __tablename__ = "audit_event"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str | None] = mapped_column(String(50))
    resource_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


# Written by the driver, not the ORM's unit of work: every write of every domain adds one.
_EVENT_COLUMNS = [column.name for column in AuditEvent.__table__.columns]
_ADD_EVENT = (
    f"INSERT INTO audit_event ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _EVENT_COLUMNS)})"
)


def current_request_id() -> str | None:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return request_id if isinstance(request_id, str) else None


async def record(
    session: Writes,
    principal: AccessClaims,
    *,
    action: str,
    resource_type: str | None = None,
    resource_id: object | None = None,
    status: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write an event in the request's transaction: it commits or rolls back with the change."""
    await record_for(
        session,
        tenant_id=principal.tenant_id,
        actor_type=principal.kind,
        actor_id=principal.subject,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        status=status,
        details=details,
    )


async def record_for(
    session: Writes,
    *,
    tenant_id: uuid.UUID,
    actor_type: PrincipalKind,
    actor_id: uuid.UUID | None,
    action: str,
    resource_type: str | None = None,
    resource_id: object | None = None,
    status: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write an event for an actor named explicitly (no verified token: a sign-in, a support
    lookup filed under the platform), in the given transaction."""
    await execute_many(
        session,
        _ADD_EVENT,
        [
            {
                "tenant_id": tenant_id,
                "id": new_id(),
                "occurred_at": datetime.now(UTC),
                "request_id": current_request_id(),
                "actor_type": actor_type.value,
                "actor_id": actor_id,
                "action": action,
                "resource_type": resource_type,
                "resource_id": str(resource_id) if resource_id is not None else None,
                "status": status,
                "details": json.dumps(details) if details is not None else None,
            }
        ],
    )


async def record_apart(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    tenant_id: uuid.UUID,
    actor_type: PrincipalKind,
    actor_id: uuid.UUID | None,
    action: str,
    status: int,
    resource_type: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write an event in a transaction of its own (the request's is rolling back).
    Best effort: failing to audit a denial must not turn it into a 500."""
    try:
        async with tenancy.tenant_transaction(sessionmaker, tenant_id) as session:
            await record_for(
                session,
                tenant_id=tenant_id,
                actor_type=actor_type,
                actor_id=actor_id,
                action=action,
                resource_type=resource_type,
                status=status,
                details=details,
            )
    except Exception as exc:
        log.warning("audit_write_failed", action=action, error=type(exc).__name__)


# Failures of an authenticated tenant request that the tenant's audit log keeps.
REFUSAL_ACTIONS = {403: "request.denied", 409: "request.rejected", 412: "request.rejected"}


async def record_refusal(
    sessionmaker: async_sessionmaker[AsyncSession],
    claims: AccessClaims,
    *,
    status: int,
    code: str,
    method: str,
    route: str | None,
) -> None:
    """Keep a denial or rejection of a tenant's request (by the API's error handlers, and by
    the console when it draws a refused form again), in a transaction of its own."""
    action = REFUSAL_ACTIONS.get(status)
    if action is None or claims.is_staff:
        return
    await record_apart(
        sessionmaker,
        tenant_id=claims.tenant_id,
        actor_type=claims.kind,
        actor_id=claims.subject,
        action=action,
        status=status,
        resource_type=route,
        details={"code": code, "method": method},
    )
