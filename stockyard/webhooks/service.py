"""The rules of webhooks: who may point one where, what a secret rotation keeps valid, which
events are re-sent, and what each delivery outcome does to the delivery and its endpoint."""

from __future__ import annotations

import base64
import json
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core import audit_trail, tenancy
from stockyard.core.database import save_new_version
from stockyard.core.errors import PreconditionFailed, ValidationFailed
from stockyard.core.ids import new_id
from stockyard.core.principal import AccessClaims, PrincipalKind
from stockyard.core.sealing import sealer
from stockyard.webhooks import repository as webhooks_repository
from stockyard.webhooks.exceptions import (
    ReplayTooLarge,
    TooManyWebhooks,
    WebhookNotFound,
)
from stockyard.webhooks.models import WebhookEndpoint
from stockyard.webhooks.schemas import (
    TEST_EVENT_TYPE,
    DeliveryRead,
    DeliveryState,
    ReplayRequest,
    ReplayResult,
    TestDelivery,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
)
from stockyard.webhooks.sender import Outcome
from stockyard.webhooks.targets import TargetRefused, check_url

MAX_ENDPOINTS_PER_TENANT = 100
REPLAY_CAP = 50_000
# Both secrets sign for this long after a rotation, so receivers can switch without a gap.
ROTATION_OVERLAP = timedelta(hours=24)
SEALING_PURPOSE = "webhook-secret"


@dataclass(frozen=True, slots=True)
class Keys:
    """What seals and opens signing secrets at rest."""

    secret_key: str

    def seal(self, secret: str) -> str:
        return sealer(self.secret_key, SEALING_PURPOSE).encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return sealer(self.secret_key, SEALING_PURPOSE).decrypt(sealed.encode()).decode()


def new_secret() -> str:
    """`whsec_` and 32 random bytes in base64, the form Standard Webhooks libraries read."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def _checked_url(url: str, *, allow_private: bool) -> str:
    try:
        await check_url(url, allow_private=allow_private)
    except TargetRefused as exc:
        raise ValidationFailed(str(exc), details={"field": "url"}) from None
    return url


async def _endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await webhooks_repository.get_endpoint(session, endpoint_id)
    if endpoint is None:
        raise WebhookNotFound()
    return endpoint


async def create_endpoint(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    body: WebhookCreate,
    keys: Keys,
    allow_private: bool,
) -> WebhookCreated:
    """A new endpoint, sent the events from now on. Its URL must reach a public address, and
    a tenant keeps at most MAX_ENDPOINTS_PER_TENANT (409 beyond)."""
    url = await _checked_url(body.url, allow_private=allow_private)
    count = await webhooks_repository.count_endpoints_locked(session, principal.tenant_id)
    if count >= MAX_ENDPOINTS_PER_TENANT:
        raise TooManyWebhooks()
    secret = new_secret()
    endpoint = WebhookEndpoint(
        tenant_id=principal.tenant_id,
        id=new_id(),
        url=url,
        event_types=body.events,
        description=body.description,
        secret=keys.seal(secret),
        created_by=principal.subject,
    )
    await webhooks_repository.add_endpoint(session, endpoint)
    await session.refresh(endpoint)
    await audit_trail.record(
        session,
        principal,
        action="webhook.create",
        resource_type="webhook",
        resource_id=endpoint.id,
        status=201,
        details={"events": body.events},
    )
    await webhooks_repository.notify(session, principal.tenant_id)
    read = WebhookRead.model_validate(endpoint)
    return WebhookCreated(**read.model_dump(), secret=secret)


async def list_endpoints(
    session: AsyncSession, *, after_id: uuid.UUID | None, limit: int
) -> list[WebhookEndpoint]:
    return await webhooks_repository.list_endpoints(session, after_id=after_id, limit=limit)


async def get_endpoint(session: AsyncSession, *, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return await _endpoint(session, endpoint_id)


async def update_endpoint(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    endpoint_id: uuid.UUID,
    version: int,
    body: WebhookUpdate,
    allow_private: bool,
) -> WebhookEndpoint:
    """Change the fields sent, only if the caller saw the current version. Enabling an
    endpoint clears why it was disabled and how long it had been failing."""
    endpoint = await _endpoint(session, endpoint_id)
    if endpoint.version != version:
        raise PreconditionFailed()
    if body.url is not None:
        endpoint.url = await _checked_url(body.url, allow_private=allow_private)
    if body.events is not None:
        endpoint.event_types = body.events
    if "description" in body.model_fields_set:
        endpoint.description = body.description
    if body.enabled is not None and body.enabled != endpoint.enabled:
        endpoint.enabled = body.enabled
        endpoint.disabled_reason = None if body.enabled else "admin"
        endpoint.failing_since = None
    await save_new_version(session, endpoint)
    await audit_trail.record(
        session,
        principal,
        action="webhook.update",
        resource_type="webhook",
        resource_id=endpoint.id,
        status=200,
        details={"changed": sorted(body.model_fields_set)},
    )
    if endpoint.enabled:
        await webhooks_repository.notify(session, principal.tenant_id)
    return endpoint


async def delete_endpoint(
    session: AsyncSession, principal: AccessClaims, *, endpoint_id: uuid.UUID
) -> None:
    """Gone with its pending deliveries and its delivery log."""
    if not await webhooks_repository.delete_endpoint(session, endpoint_id):
        raise WebhookNotFound()
    await audit_trail.record(
        session,
        principal,
        action="webhook.delete",
        resource_type="webhook",
        resource_id=endpoint_id,
        status=204,
    )


async def rotate_secret(
    session: AsyncSession, principal: AccessClaims, *, endpoint_id: uuid.UUID, keys: Keys
) -> WebhookSecret:
    """A new signing secret; the one it replaces keeps signing for ROTATION_OVERLAP, so a
    receiver can switch over without rejecting a delivery."""
    endpoint = await webhooks_repository.get_endpoint(session, endpoint_id, for_update=True)
    if endpoint is None:
        raise WebhookNotFound()
    secret = new_secret()
    now = datetime.now(UTC)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret = keys.seal(secret)
    await save_new_version(session, endpoint, at=now)
    await audit_trail.record(
        session,
        principal,
        action="webhook.rotate_secret",
        resource_type="webhook",
        resource_id=endpoint_id,
        status=200,
    )
    return WebhookSecret(secret=secret, previous_secret_expires_at=now + ROTATION_OVERLAP)


async def send_test(
    session: AsyncSession, principal: AccessClaims, *, endpoint_id: uuid.UUID
) -> TestDelivery:
    """Queue a `webhook.test` event to this endpoint alone (whatever it subscribes to)."""
    endpoint = await _endpoint(session, endpoint_id)
    event_id = new_id()
    delivery_id = await webhooks_repository.queue_test(
        session,
        tenant_id=principal.tenant_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=TEST_EVENT_TYPE,
        data={"webhook_id": str(endpoint.id)},
    )
    await audit_trail.record(
        session,
        principal,
        action="webhook.test",
        resource_type="webhook",
        resource_id=endpoint_id,
        status=202,
    )
    await webhooks_repository.notify(session, principal.tenant_id)
    return TestDelivery(delivery_id=delivery_id, event_id=event_id)


async def replay(
    session: AsyncSession, principal: AccessClaims, *, endpoint_id: uuid.UUID, body: ReplayRequest
) -> ReplayResult:
    """Queue again, to this endpoint, the past events it subscribes to that occurred in
    [after, until): at most REPLAY_CAP (a larger window queues nothing and answers 422).
    Each keeps its event id as `webhook-id`, so a receiver that saw it drops it."""
    endpoint = await _endpoint(session, endpoint_id)
    until = body.until or datetime.now(UTC)
    if until <= body.after:
        raise ValidationFailed("`until` must be later than `after`.", details={"field": "until"})
    matching, queued = await webhooks_repository.queue_replay(
        session,
        tenant_id=principal.tenant_id,
        endpoint_id=endpoint.id,
        patterns=list(endpoint.event_types),
        after=body.after,
        until=until,
        cap=REPLAY_CAP,
    )
    if matching > REPLAY_CAP:
        raise ReplayTooLarge(details={"limit": REPLAY_CAP})
    await audit_trail.record(
        session,
        principal,
        action="webhook.replay",
        resource_type="webhook",
        resource_id=endpoint_id,
        status=202,
        details={"queued": queued},
    )
    await webhooks_repository.notify(session, principal.tenant_id)
    return ReplayResult(queued=queued)


async def list_deliveries(
    session: AsyncSession,
    *,
    endpoint_id: uuid.UUID,
    before_id: uuid.UUID | None,
    state: DeliveryState | None,
    limit: int,
) -> list[DeliveryRead]:
    """An endpoint's deliveries, newest first, each with every attempt made."""
    await _endpoint(session, endpoint_id)
    rows = await webhooks_repository.list_deliveries(
        session,
        endpoint_id,
        before_id=before_id,
        state=state.value if state else None,
        limit=limit,
    )
    attempts: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for attempt in await webhooks_repository.attempts_of(session, [row["id"] for row in rows]):
        attempts.setdefault(attempt["delivery_id"], []).append(attempt)
    return [
        DeliveryRead.model_validate(
            {
                **dict(row),
                "next_attempt_at": row["next_attempt_at"] if row["state"] == "pending" else None,
                "attempts": [dict(a) for a in attempts.get(row["id"], [])],
            }
        )
        for row in rows
    ]


async def prune_deliveries(session: AsyncSession, cutoff: datetime) -> int:
    """Retention of the delivery log: finished deliveries older than `cutoff` go, in every
    tenant (pending ones stay, however old: they are still owed)."""
    deleted = 0
    for tenant_id in await webhooks_repository.all_tenants(session):
        async with session.begin_nested():
            await tenancy.set_current_tenant(session, tenant_id)
            deleted += await webhooks_repository.delete_finished_before(session, cutoff)
    return deleted


# --- delivery outcomes (the dispatcher) ---


@dataclass(frozen=True, slots=True)
class Schedule:
    """When to try again after a failed attempt."""

    delays: tuple[float, ...]
    disable_after: timedelta
    jitter: float = 0.2

    def retry_after(self, attempt: int) -> float | None:
        """Seconds until the next attempt after attempt number `attempt` failed; None when it
        was the last (one first attempt, then one per delay)."""
        if attempt > len(self.delays):
            return None
        delay = self.delays[attempt - 1]
        # Jitter spreads retries of one outage's failures out, instead of firing them at once.
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311


async def settle(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    delivery: asyncpg.Record,
    outcome: Outcome,
    attempted_at: datetime,
    schedule: Schedule,
) -> DeliveryState:
    """Record an attempt. 2xx: delivered, and the endpoint is healthy again. 410 Gone: the
    receiver says it is gone for good, so the endpoint is disabled. Anything else is retried
    on the schedule until it runs out; an endpoint failing for `disable_after` with no
    success between is disabled. Each disabling is written to the tenant's audit log."""
    now = datetime.now(UTC)
    retry_after = None if outcome.delivered else schedule.retry_after(delivery["attempts"])
    if outcome.delivered:
        state = DeliveryState.DELIVERED
    elif outcome.status_code == 410 or retry_after is None:
        state = DeliveryState.FAILED
    else:
        state = DeliveryState.PENDING
    settled = await webhooks_repository.settle(
        session,
        tenant_id=tenant_id,
        delivery_id=delivery["id"],
        attempt=delivery["attempts"],
        attempted_at=attempted_at,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error=outcome.error,
        state=state.value,
        next_attempt_at=now + timedelta(seconds=retry_after or 0),
    )
    if not settled:
        # A later claim owns the delivery (this one outlived its lease): its outcome, not
        # this one, speaks for the endpoint.
        return DeliveryState.PENDING
    endpoint_id = delivery["endpoint_id"]
    if outcome.delivered:
        if delivery["endpoint_failing"]:
            await webhooks_repository.mark_endpoint_healthy(session, endpoint_id)
        return state
    if outcome.status_code == 410:
        await _disable(session, tenant_id, endpoint_id, reason="gone", status=410)
        return state
    failing_for = await webhooks_repository.mark_endpoint_failing(session, endpoint_id)
    if failing_for >= schedule.disable_after:
        await _disable(session, tenant_id, endpoint_id, reason="failing", status=None)
    return state


async def _disable(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    reason: str,
    status: int | None,
) -> None:
    if await webhooks_repository.disable_endpoint(session, endpoint_id, reason):
        await audit_trail.record_for(
            session,
            tenant_id=tenant_id,
            actor_type=PrincipalKind.SYSTEM,
            actor_id=None,
            action="webhook.disabled",
            resource_type="webhook",
            resource_id=endpoint_id,
            status=status,
            details={"reason": reason},
        )


def secrets_for_signing(delivery: asyncpg.Record, keys: Keys, now: datetime) -> list[str]:
    """The endpoint's secret, and the one it replaced while the rotation overlap lasts."""
    live = [keys.open(delivery["secret"])]
    expires = delivery["previous_secret_expires_at"]
    if delivery["previous_secret"] and expires is not None and expires > now:
        live.append(keys.open(delivery["previous_secret"]))
    return live


def message_body(delivery: asyncpg.Record) -> bytes:
    """`{"type", "timestamp", "data"}`: the Standard Webhooks payload, `timestamp` being when
    the event occurred. `data` is the event's data exactly as the feed shows it."""
    occurred_at: datetime = delivery["occurred_at"]
    data: str = delivery["data"]
    event_type = json.dumps(delivery["event_type"])
    timestamp = json.dumps(occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    # `data` arrives as JSON text from PostgreSQL and goes out as it came.
    return f'{{"type":{event_type},"timestamp":{timestamp},"data":{data}}}'.encode()
