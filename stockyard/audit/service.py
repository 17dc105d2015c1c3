"""Reading the audit trail across tenants, for platform support."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.audit import repository as audit_repository
from stockyard.audit.schemas import RequestTrace, TracedChange, TracedDelivery, TraceEvent
from stockyard.core import audit_trail
from stockyard.core.audit_trail import PLATFORM_TENANT_ID
from stockyard.core.principal import AccessClaims, PrincipalKind

# A request produces a handful of events; a client-chosen id shared by many requests (or
# tenants) must not turn one lookup into an unbounded read.
TRACE_LIMIT = 200


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


async def request_trace(
    session: AsyncSession, principal: AccessClaims, *, request_id: str
) -> RequestTrace:
    """The support trace as the API answers it and the console shows it: what happened, in
    which tenant, with which status, and nothing of the tenant's business data."""
    trace = await trace_for_staff(session, principal, request_id=request_id, limit=TRACE_LIMIT + 1)
    return RequestTrace(
        request_id=request_id,
        events=[
            TraceEvent.model_validate(row, from_attributes=True)
            for row in trace.events[:TRACE_LIMIT]
        ],
        changes=[
            TracedChange.model_validate(row, from_attributes=True)
            for row in trace.changes[:TRACE_LIMIT]
        ],
        deliveries=[
            TracedDelivery.model_validate(row, from_attributes=True)
            for row in trace.deliveries[:TRACE_LIMIT]
        ],
        truncated=max(len(trace.events), len(trace.changes), len(trace.deliveries)) > TRACE_LIMIT,
    )
