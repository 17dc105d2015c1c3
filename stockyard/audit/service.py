"""Reading the audit trail across tenants, for platform support."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.audit import repository as audit_repository
from stockyard.core import audit_trail
from stockyard.core.audit_trail import PLATFORM_TENANT_ID
from stockyard.core.principal import AccessClaims, PrincipalKind


@dataclass(frozen=True, slots=True)
class Trace:
    events: list[Any]
    changes: list[Any]
    deliveries: list[Any]


async def trace_for_staff(
    session: AsyncSession, principal: AccessClaims, *, request_id: str, limit: int
) -> Trace:
    """Every audit event of one request across tenants, the events it wrote and their webhook
    deliveries, read as the support role; the lookup is itself audited, under the platform."""
    await audit_repository.become_support(session)
    events = await audit_repository.trace(session, request_id, limit=limit)
    changes, deliveries = await audit_repository.trace_changes(session, request_id, limit=limit)
    await audit_trail.record_for(
        session,
        tenant_id=PLATFORM_TENANT_ID,
        actor_type=PrincipalKind.STAFF,
        actor_id=principal.subject,
        action="support.trace",
        resource_type="request",
        resource_id=request_id,
        status=200,
        details={"events": len(events)},
    )
    return Trace(events=events, changes=changes, deliveries=deliveries)
