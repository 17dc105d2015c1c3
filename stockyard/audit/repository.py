"""All SQL that reads the audit trail, and its monthly partitions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.audit_trail import AuditEvent
from stockyard.core.partitions import ensure_monthly_partitions
from stockyard.core.settings import SUPPORT_ROLE


async def list_events(
    session: AsyncSession,
    *,
    request_id: str | None,
    actor_id: uuid.UUID | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[AuditEvent]:
    """The tenant's events, newest first (row-level security keeps it to the tenant)."""
    statement = select(AuditEvent)
    if request_id is not None:
        statement = statement.where(AuditEvent.request_id == request_id)
    if actor_id is not None:
        statement = statement.where(AuditEvent.actor_id == actor_id)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    if since is not None:
        statement = statement.where(AuditEvent.occurred_at >= since)
    if until is not None:
        statement = statement.where(AuditEvent.occurred_at < until)
    if before is not None:
        statement = statement.where(
            tuple_(AuditEvent.occurred_at, AuditEvent.id) < tuple_(before[0], before[1])
        )
    statement = statement.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
    return list(await session.scalars(statement.limit(limit)))


async def become_support(session: AsyncSession) -> None:
    """For the rest of this transaction act as the support role: it reads audit events of
    every tenant and tenant slugs, and nothing else in the database."""
    await session.execute(text(f"SET LOCAL ROLE {SUPPORT_ROLE}"))


async def trace(session: AsyncSession, request_id: str, *, limit: int) -> list[Any]:
    """The events of one request id, oldest first, at most `limit`: what happened, to which
    tenant, with what outcome; never `details` (the support role may not read it). Request
    ids come from clients, so the same id may name requests of several tenants: each event
    carries its own tenant."""
    result = await session.execute(
        text(
            """
            SELECT a.tenant_id, t.slug AS tenant_slug, a.occurred_at, a.actor_type, a.actor_id,
                   a.action, a.resource_type, a.resource_id, a.status
            FROM audit_event a LEFT JOIN tenant t ON t.id = a.tenant_id
            WHERE a.request_id = :request_id
            ORDER BY a.occurred_at, a.id
            LIMIT :limit
            """
        ),
        {"request_id": request_id, "limit": limit},
    )
    return list(result.all())


# A request's events were written by its transaction, which began before its audit events
# were recorded and ended within the statement timeout: looked up in that window of each
# tenant the request touched, through the event log's (tenant, time) key. The margin after
# covers an API clock behind the database's (audit times are the API's, event times the
# database's).
_TRACE_EVENTS = """
    WITH touched AS (
        SELECT tenant_id, min(occurred_at) - interval '5 minutes' AS since,
               max(occurred_at) + interval '1 minute' AS until
        FROM audit_event WHERE request_id = :request_id GROUP BY tenant_id
    )
    SELECT e.tenant_id, e.id, e.type, e.occurred_at
    FROM touched t JOIN event e
      ON e.tenant_id = t.tenant_id AND e.occurred_at BETWEEN t.since AND t.until
    WHERE e.request_id = :request_id
    ORDER BY e.occurred_at, e.id
    LIMIT :limit
"""
_TRACE_DELIVERIES = """
    SELECT tenant_id, id, event_id, endpoint_id AS webhook_id, state, attempts, last_status
    FROM webhook_delivery
    WHERE (tenant_id, event_id) IN (
        SELECT * FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:event_ids AS uuid[]))
    )
    ORDER BY id
    LIMIT :limit
"""


async def trace_changes(
    session: AsyncSession, request_id: str, *, limit: int
) -> tuple[list[Any], list[Any]]:
    """The events a request wrote and their webhook deliveries: ids, types, states and
    statuses, never an event's data or an endpoint's URL (the support role may read neither)."""
    events = list(
        (
            await session.execute(text(_TRACE_EVENTS), {"request_id": request_id, "limit": limit})
        ).all()
    )
    if not events:
        return events, []
    deliveries = list(
        (
            await session.execute(
                text(_TRACE_DELIVERIES),
                {
                    "tenant_ids": [event.tenant_id for event in events],
                    "event_ids": [event.id for event in events],
                    "limit": limit,
                },
            )
        ).all()
    )
    return events, deliveries


async def ensure_partitions(session: AsyncSession, *, months_ahead: int = 3) -> list[str]:
    """The audit trail's monthly partitions, with the support role's read policy on each."""
    return await ensure_monthly_partitions(
        session,
        "audit_event",
        months_ahead=months_ahead,
        extra_policies=lambda name: [
            f"CREATE POLICY support_read ON {name} FOR SELECT TO {SUPPORT_ROLE} USING (true)"
        ],
    )
