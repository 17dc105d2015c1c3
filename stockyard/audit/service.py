"""The audit trail: what changed, who asked, in which request.

A change and its event share the request's transaction, so a rolled-back change leaves no
event. Denials worth keeping (failed sign-ins, 403s, conflicts) are written in a transaction
of their own, because the request's own transaction is about to roll back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.audit import repository as audit_repository
from stockyard.audit.models import PLATFORM_TENANT_ID, AuditEvent, StaffUser
from stockyard.auth.tokens import AccessClaims
from stockyard.core.database import insert_unique
from stockyard.core.errors import Conflict
from stockyard.core.ids import new_id
from stockyard.tenants import repository as tenant_repository

log = structlog.get_logger()


def current_request_id() -> str | None:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return request_id if isinstance(request_id, str) else None


def _actor_type(principal: AccessClaims) -> str:
    if principal.role == "staff":
        return "staff"
    return "client" if principal.is_client else "user"


def _event(
    tenant_id: uuid.UUID,
    *,
    actor_type: str,
    actor_id: uuid.UUID | None,
    action: str,
    resource_type: str | None,
    resource_id: object | None,
    status: int | None,
    details: dict[str, Any] | None,
) -> AuditEvent:
    return AuditEvent(
        tenant_id=tenant_id,
        id=new_id(),
        occurred_at=datetime.now(UTC),
        request_id=current_request_id(),
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        status=status,
        details=details,
    )


async def record(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    action: str,
    resource_type: str | None = None,
    resource_id: object | None = None,
    status: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write an event in the request's transaction: it commits or rolls back with the change."""
    await audit_repository.add(
        session,
        _event(
            principal.tenant_id,
            actor_type=_actor_type(principal),
            actor_id=principal.subject,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            status=status,
            details=details,
        ),
    )


async def record_apart(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    tenant_id: uuid.UUID,
    actor_type: str,
    actor_id: uuid.UUID | None,
    action: str,
    status: int,
    resource_type: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write an event in a transaction of its own (the request's is rolling back).
    Best effort: failing to audit a denial must not turn it into a 500."""
    try:
        async with sessionmaker() as session, session.begin():
            await tenant_repository.set_current_tenant(session, tenant_id)
            await audit_repository.add(
                session,
                _event(
                    tenant_id,
                    actor_type=actor_type,
                    actor_id=actor_id,
                    action=action,
                    resource_type=resource_type,
                    resource_id=None,
                    status=status,
                    details=details,
                ),
            )
    except Exception as exc:
        log.warning("audit_write_failed", action=action, error=type(exc).__name__)


async def trace_for_staff(
    session: AsyncSession, principal: AccessClaims, *, request_id: str, limit: int
) -> list[Any]:
    """Every event of one request across tenants, read as the support role; the lookup is
    itself audited, under the platform."""
    await audit_repository.become_support(session)
    events = await audit_repository.trace(session, request_id, limit=limit)
    await audit_repository.add(
        session,
        _event(
            PLATFORM_TENANT_ID,
            actor_type="staff",
            actor_id=principal.subject,
            action="support.trace",
            resource_type="request",
            resource_id=request_id,
            status=200,
            details={"events": len(events)},
        ),
    )
    return events


async def create_staff(session: AsyncSession, *, email: str, password_hash: str) -> StaffUser:
    """A support engineer account (operators only, from the CLI)."""
    staff = StaffUser(id=uuid.uuid4(), email=email, password_hash=password_hash, role="support")
    await insert_unique(session, staff, taken=Conflict("A staff account with this email exists."))
    return staff
