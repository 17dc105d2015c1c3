"""All SQL of webhooks: endpoints, queueing events as deliveries, claiming and settling them,
and the delivery log. Every statement runs in a tenant's transaction under row-level
security, but for the definer look-ups that say which tenants have work."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.database import fetch, fetch_one
from stockyard.webhooks.models import WebhookEndpoint

# The dispatcher listens here; the payload is the tenant id whose webhooks have work.
CHANNEL = "stockyard_webhooks"


async def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    session.add(endpoint)
    await session.flush()


async def get_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint | None:
    statement = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def list_endpoints(
    session: AsyncSession, *, after_id: uuid.UUID | None, limit: int
) -> list[WebhookEndpoint]:
    statement = select(WebhookEndpoint).order_by(WebhookEndpoint.id).limit(limit)
    if after_id is not None:
        statement = statement.where(WebhookEndpoint.id > after_id)
    return list(await session.scalars(statement))


async def count_endpoints_locked(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """The tenant's endpoints, counted under a transaction-scoped lock of the tenant's
    endpoint list, so concurrent creations cannot all pass the cap."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('webhook_endpoint:' || :tenant_id))"),
        {"tenant_id": str(tenant_id)},
    )
    return int(await session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)


async def delete_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> bool:
    """False when there was none (a concurrent delete came first)."""
    rows = await fetch(
        session,
        "DELETE FROM webhook_endpoint WHERE id = :endpoint_id RETURNING id",
        {"endpoint_id": endpoint_id},
    )
    return bool(rows)


async def notify(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Wake the dispatchers when this transaction commits (NOTIFY is sent on commit only)."""
    await session.execute(
        text("SELECT pg_notify(:channel, :tenant_id)"),
        {"channel": CHANNEL, "tenant_id": str(tenant_id)},
    )


# An event matches an endpoint that names its type, its family (`stock.*`) or everything.
_MATCHES = (
    "(e.type = ANY(:patterns) OR '*' = ANY(:patterns) "
    "OR split_part(e.type, '.', 1) || '.*' = ANY(:patterns))"
)


async def lock_endpoints_to_fan_out(session: AsyncSession) -> list[asyncpg.Record]:
    """The tenant's enabled endpoints that no other dispatcher is queueing for right now
    (SKIP LOCKED): each is then queued by exactly one."""
    return await fetch(
        session,
        "SELECT id, event_types, position_txid::text AS position_txid, position_id "
        "FROM webhook_endpoint WHERE enabled ORDER BY id FOR UPDATE SKIP LOCKED",
    )


# Events past the endpoint's position, among those whose transactions have all finished
# (the feed's horizon, events/repository.py), queued if they match, and the position moved
# past them all in the same statement.
_FAN_OUT = f"""
    WITH batch AS (
        SELECT e.id, e.type, e.occurred_at, e.data, e.txid
        FROM event e
        WHERE e.txid < pg_snapshot_xmin(pg_current_snapshot())
          AND (e.txid, e.id) > (:position_txid::text::xid8, :position_id)
        ORDER BY e.txid, e.id
        LIMIT :batch
    ), queued AS (
        INSERT INTO webhook_delivery
            (tenant_id, endpoint_id, event_id, event_type, occurred_at, data)
        SELECT :tenant_id, :endpoint_id, e.id, e.type, e.occurred_at, e.data
        FROM batch e
        WHERE {_MATCHES}
        ORDER BY e.txid, e.id
        RETURNING 1
    ), last AS (
        SELECT txid, id FROM batch ORDER BY txid DESC, id DESC LIMIT 1
    ), moved AS (
        UPDATE webhook_endpoint w SET position_txid = last.txid, position_id = last.id
        FROM last WHERE w.tenant_id = :tenant_id AND w.id = :endpoint_id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM batch) AS scanned, (SELECT count(*) FROM queued) AS queued,
           (SELECT count(*) FROM moved) AS moved
"""


@dataclass(frozen=True, slots=True)
class FanOut:
    scanned: int
    queued: int


async def fan_out(
    session: AsyncSession, tenant_id: uuid.UUID, endpoint: asyncpg.Record, *, batch: int
) -> FanOut:
    row = await fetch_one(
        session,
        _FAN_OUT,
        {
            "tenant_id": tenant_id,
            "endpoint_id": endpoint["id"],
            "position_txid": endpoint["position_txid"],
            "position_id": endpoint["position_id"],
            "patterns": list(endpoint["event_types"]),
            "batch": batch,
        },
    )
    assert row is not None
    return FanOut(scanned=row["scanned"], queued=row["queued"])


# Each enabled endpoint's due deliveries, oldest first, up to the slots it has free in this
# process (`per_endpoint` less what is in flight to it here); claiming one moves its next
# attempt a lease ahead, so a dispatcher that dies mid-send leaves it due again once the
# lease runs out.
_CLAIM = """
    WITH in_flight AS (
        SELECT * FROM unnest(:busy_ids::uuid[], :busy_counts::int[]) AS b(id, n)
    ), claimable AS (
        SELECT d.tenant_id, d.id
        FROM (
            SELECT e.tenant_id, e.id, :per_endpoint - coalesce(b.n, 0) AS free
            FROM webhook_endpoint e LEFT JOIN in_flight b ON b.id = e.id
            WHERE e.enabled
        ) e
        CROSS JOIN LATERAL (
            SELECT d.tenant_id, d.id FROM webhook_delivery d
            WHERE d.tenant_id = e.tenant_id AND d.endpoint_id = e.id
              AND d.state = 'pending' AND d.next_attempt_at <= now()
            ORDER BY d.next_attempt_at
            LIMIT e.free
            FOR UPDATE OF d SKIP LOCKED
        ) d
        WHERE e.free > 0
        LIMIT :limit
    )
    UPDATE webhook_delivery d
    SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease)
    FROM claimable c, webhook_endpoint e
    WHERE d.tenant_id = c.tenant_id AND d.id = c.id
      AND e.tenant_id = d.tenant_id AND e.id = d.endpoint_id
    RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.occurred_at,
              d.data::text AS data, d.attempts, d.created_at, e.url, e.secret,
              e.previous_secret, e.previous_secret_expires_at,
              e.failing_since IS NOT NULL AS endpoint_failing
"""


async def claim(
    session: AsyncSession,
    *,
    in_flight: dict[uuid.UUID, int],
    per_endpoint: int,
    limit: int,
    lease_seconds: float,
) -> list[asyncpg.Record]:
    return await fetch(
        session,
        _CLAIM,
        {
            "busy_ids": list(in_flight),
            "busy_counts": list(in_flight.values()),
            "per_endpoint": per_endpoint,
            "limit": limit,
            "lease": lease_seconds,
        },
    )


# The attempt logged and the delivery settled in one statement. Only the claim that made
# this attempt settles the delivery: if its lease ran out and another dispatcher claimed it
# again, the later claim decides.
_SETTLE = """
    WITH logged AS (
        INSERT INTO webhook_attempt
            (tenant_id, delivery_id, attempt, attempted_at, duration_ms, status_code, error)
        VALUES (:tenant_id, :delivery_id, :attempt, :attempted_at, :duration_ms,
                :status_code::integer, :error::text)
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    UPDATE webhook_delivery
    SET state = :state::text, next_attempt_at = :next_attempt_at::timestamptz,
        last_status = :status_code::integer, last_error = :error::text,
        finished_at = CASE WHEN :state::text = 'pending' THEN NULL ELSE now() END
    WHERE tenant_id = :tenant_id AND id = :delivery_id AND attempts = :attempt
    RETURNING endpoint_id
"""


async def settle(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    delivery_id: uuid.UUID,
    attempt: int,
    attempted_at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str | None,
    state: str,
    next_attempt_at: datetime,
) -> bool:
    """Log the attempt and record where the delivery stands. False: a later claim owns it."""
    settled = await fetch(
        session,
        _SETTLE,
        {
            "tenant_id": tenant_id,
            "delivery_id": delivery_id,
            "attempt": attempt,
            "attempted_at": attempted_at,
            "duration_ms": duration_ms,
            "status_code": status_code,
            "error": error,
            "state": state,
            "next_attempt_at": next_attempt_at,
        },
    )
    return bool(settled)


async def mark_endpoint_healthy(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    await fetch(
        session,
        "UPDATE webhook_endpoint SET failing_since = NULL "
        "WHERE id = :endpoint_id AND failing_since IS NOT NULL",
        {"endpoint_id": endpoint_id},
    )


async def mark_endpoint_failing(session: AsyncSession, endpoint_id: uuid.UUID) -> timedelta:
    """How long the endpoint has been failing (since now, if this is its first failure)."""
    row = await fetch_one(
        session,
        "UPDATE webhook_endpoint SET failing_since = coalesce(failing_since, now()) "
        "WHERE id = :endpoint_id RETURNING clock_timestamp() - failing_since AS failing_for",
        {"endpoint_id": endpoint_id},
    )
    return timedelta(0) if row is None else row["failing_for"]


async def disable_endpoint(session: AsyncSession, endpoint_id: uuid.UUID, reason: str) -> bool:
    """Turn an endpoint off (a new version: an admin's stale If-Match then fails)."""
    rows = await fetch(
        session,
        "UPDATE webhook_endpoint SET enabled = false, disabled_reason = :reason, "
        "version = version + 1, updated_at = now() "
        "WHERE id = :endpoint_id AND enabled RETURNING id",
        {"endpoint_id": endpoint_id, "reason": reason},
    )
    return bool(rows)


async def queue_test(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
) -> uuid.UUID:
    row = await fetch_one(
        session,
        "INSERT INTO webhook_delivery "
        "(tenant_id, endpoint_id, event_id, event_type, occurred_at, data) "
        "VALUES (:tenant_id, :endpoint_id, :event_id, :event_type, now(), :data::jsonb) "
        "RETURNING id",
        {
            "tenant_id": tenant_id,
            "endpoint_id": endpoint_id,
            "event_id": event_id,
            "event_type": event_type,
            "data": json.dumps(data),
        },
    )
    assert row is not None
    return uuid.UUID(str(row["id"]))


# Past events, by when they occurred, as fresh deliveries to one endpoint. Counted first, up
# to one over the cap, so an over-large replay queues nothing.
_REPLAY = f"""
    WITH matching AS (
        SELECT e.id, e.type, e.occurred_at, e.data, e.txid
        FROM event e
        WHERE e.occurred_at >= :after AND e.occurred_at < :until
          AND e.txid < pg_snapshot_xmin(pg_current_snapshot()) AND {_MATCHES}
        LIMIT :cap_plus_one
    ), total AS (
        SELECT count(*) AS n FROM matching
    ), queued AS (
        INSERT INTO webhook_delivery
            (tenant_id, endpoint_id, event_id, event_type, occurred_at, data)
        SELECT :tenant_id, :endpoint_id, e.id, e.type, e.occurred_at, e.data
        FROM matching e
        WHERE (SELECT n FROM total) <= :cap
        ORDER BY e.txid, e.id
        RETURNING 1
    )
    SELECT (SELECT n FROM total) AS matching, (SELECT count(*) FROM queued) AS queued
"""


async def queue_replay(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    patterns: list[str],
    after: datetime,
    until: datetime,
    cap: int,
) -> tuple[int, int]:
    """(events matching, up to cap + 1; deliveries queued)."""
    row = await fetch_one(
        session,
        _REPLAY,
        {
            "tenant_id": tenant_id,
            "endpoint_id": endpoint_id,
            "patterns": patterns,
            "after": after,
            "until": until,
            "cap": cap,
            "cap_plus_one": cap + 1,
        },
    )
    assert row is not None
    return row["matching"], row["queued"]


async def list_deliveries(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    before_id: uuid.UUID | None,
    state: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """An endpoint's deliveries, newest first."""
    filters = []
    params: dict[str, Any] = {"endpoint_id": endpoint_id, "limit": limit}
    if before_id is not None:
        filters.append("AND id < :before_id")
        params["before_id"] = before_id
    if state is not None:
        filters.append("AND state = :state")
        params["state"] = state
    return await fetch(
        session,
        "SELECT id, event_id, event_type, state, attempts, next_attempt_at, created_at, "
        f"finished_at FROM webhook_delivery WHERE endpoint_id = :endpoint_id {' '.join(filters)} "
        "ORDER BY id DESC LIMIT :limit",
        params,
    )


async def attempts_of(session: AsyncSession, delivery_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await fetch(
        session,
        "SELECT delivery_id, attempt, attempted_at, duration_ms, status_code, error "
        "FROM webhook_attempt WHERE delivery_id = ANY(:ids::uuid[]) "
        "ORDER BY delivery_id, attempt",
        {"ids": delivery_ids},
    )


async def delete_finished_before(session: AsyncSession, cutoff: datetime) -> int:
    """Retention of the delivery log, for the session's tenant."""
    rows = await fetch(
        session,
        "DELETE FROM webhook_delivery WHERE state <> 'pending' AND finished_at < :cutoff "
        "RETURNING 1",
        {"cutoff": cutoff},
    )
    return len(rows)


async def all_tenants(session: AsyncSession) -> list[uuid.UUID]:
    return list(await session.scalars(text("SELECT stockyard_tenant_ids()")))


async def tenants_with_endpoints(session: AsyncSession) -> list[uuid.UUID]:
    return list(await session.scalars(text("SELECT stockyard_tenants_with_webhook_endpoints()")))


async def tenants_with_due_deliveries(session: AsyncSession) -> list[uuid.UUID]:
    return list(
        await session.scalars(text("SELECT stockyard_tenants_with_due_webhook_deliveries()"))
    )


async def due_deliveries(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT stockyard_due_webhook_deliveries()")) or 0)
