"""The webhook dispatcher: queues each tenant's new events as deliveries to its endpoints,
and sends the deliveries that are due. It runs in every API process (and in `stockyard
worker`); any number of them share the work through row locks, never sending one attempt
twice at once.

- Woken by NOTIFY when a transaction with events (or a test, a replay) commits, and by a
  timer for what no notification announces: retries coming due, a notification missed while
  the listening connection was down.
- Queueing (fan-out) locks the tenant's endpoints with SKIP LOCKED and moves each one's feed
  position in the transaction that queues the events past it: nothing skipped or doubled.
- Claiming moves a delivery's next attempt one lease ahead. A process that dies mid-send
  leaves it to come due again when the lease ends: delivery is at least once.
- A slow endpoint holds at most `webhook_endpoint_concurrency` of this process's
  `webhook_concurrency` sends, and one tenant at most half of them (or one endpoint's share,
  if larger), whatever its number of endpoints: other tenants keep the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.core import metrics, tenancy
from stockyard.core.settings import Settings
from stockyard.webhooks import repository as webhooks_repository
from stockyard.webhooks import service as webhooks_service
from stockyard.webhooks.schemas import DeliveryState
from stockyard.webhooks.sender import Sender
from stockyard.webhooks.service import Keys, Schedule

log = structlog.get_logger()

FAN_OUT_BATCH = 1000
# Batches one tenant's endpoint may queue per round before other tenants get their turn.
FAN_OUT_ROUNDS = 20
# A claim lasts twice the attempt's timeout and then some, so it outlives the attempt it
# was made for (and the settling transaction after it) even on a loaded machine.
LEASE_MARGIN_SECONDS = 5.0
LISTEN_RETRY_SECONDS = 2.0


class Dispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        listen_dsn: str | None,
    ) -> None:
        if settings.secret_key is None:
            raise RuntimeError("the webhook dispatcher needs STOCKYARD_SECRET_KEY")
        self._sessionmaker = sessionmaker
        self._listen_dsn = listen_dsn
        self._keys = Keys(settings.secret_key.get_secret_value())
        self._schedule = Schedule(
            delays=tuple(settings.webhook_retry_schedule),
            disable_after=timedelta(hours=settings.webhook_disable_after_hours),
        )
        self._sender = Sender(
            allow_private=settings.webhook_allow_private_targets,
            connect_timeout=settings.webhook_connect_timeout_seconds,
            timeout=settings.webhook_timeout_seconds,
            max_connections=settings.webhook_concurrency,
        )
        self._slots = settings.webhook_concurrency
        self._per_endpoint = settings.webhook_endpoint_concurrency
        self._attempt_timeout = settings.webhook_timeout_seconds
        self._lease = 2 * settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self._poll_seconds = settings.webhook_poll_seconds
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight: Counter[uuid.UUID] = Counter()
        self._tenant_in_flight: Counter[uuid.UUID] = Counter()
        self._tenant_share = max(self._per_endpoint, self._slots // 2)
        self._notified: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self._next_full_scan = 0.0

    # --- the loop ---

    async def run(self, stopping: asyncio.Event) -> None:
        """Work until `stopping` is set; then let the sends in flight finish (bounded by the
        attempt timeout) so none is cut off after the receiver has acted on it."""
        listener = (
            asyncio.create_task(self._listen(stopping)) if self._listen_dsn is not None else None
        )
        try:
            while not stopping.is_set():
                # Cleared before the work, not after: a wake-up that arrives while it runs (a
                # send finishing, a notification) must start the next round at once.
                self._wake.clear()
                try:
                    await self.work_once()
                except Exception as exc:  # the loop must outlive a database outage
                    log.warning(
                        "webhook_dispatch_failed", error=type(exc).__name__, message=str(exc)[:200]
                    )
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self._poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if self._sending:
                await asyncio.wait(self._sending, timeout=self._attempt_timeout)
            await self._sender.close()

    async def work_once(self) -> None:
        """Queue new events, then claim and start sending what is due."""
        now = time.monotonic()
        if now >= self._next_full_scan:
            self._next_full_scan = now + self._poll_seconds
            async with self._sessionmaker() as session, session.begin():
                tenants = set(await webhooks_repository.tenants_with_endpoints(session))
                metrics.WEBHOOK_QUEUE_DEPTH.set(await webhooks_repository.due_deliveries(session))
            self._notified.clear()
        else:
            tenants, self._notified = self._notified, set()
        for tenant_id in tenants:
            await self._fan_out(tenant_id)
        await self._claim_due()

    async def _fan_out(self, tenant_id: uuid.UUID) -> None:
        for _ in range(FAN_OUT_ROUNDS):
            async with tenancy.tenant_transaction(self._sessionmaker, tenant_id) as session:
                endpoints = await webhooks_repository.lock_endpoints_to_fan_out(session)
                full = False
                for endpoint in endpoints:
                    result = await webhooks_repository.fan_out(
                        session, tenant_id, endpoint, batch=FAN_OUT_BATCH
                    )
                    full = full or result.scanned == FAN_OUT_BATCH
            if not full:
                return
        self._notified.add(tenant_id)  # a backlog: carry on next round, after the others
        self._wake.set()

    async def _claim_due(self) -> None:
        if len(self._sending) >= self._slots:
            return
        async with self._sessionmaker() as session, session.begin():
            tenants = await webhooks_repository.tenants_with_due_deliveries(session)
        random.shuffle(tenants)  # no tenant always first in line
        for tenant_id in tenants:
            # No tenant takes more than its share of the pool, however many endpoints it has
            # or however slowly they answer: the rest stays for the others.
            free = min(
                self._slots - len(self._sending),
                self._tenant_share - self._tenant_in_flight[tenant_id],
            )
            if len(self._sending) >= self._slots:
                return
            if free <= 0:
                continue
            async with tenancy.tenant_transaction(self._sessionmaker, tenant_id) as session:
                claimed = await webhooks_repository.claim(
                    session,
                    in_flight=dict(self._in_flight),
                    per_endpoint=self._per_endpoint,
                    limit=free,
                    lease_seconds=self._lease,
                )
            for delivery in claimed:
                self._start(tenant_id, delivery)

    def _start(self, tenant_id: uuid.UUID, delivery: asyncpg.Record) -> None:
        endpoint_id = delivery["endpoint_id"]
        self._in_flight[endpoint_id] += 1
        self._tenant_in_flight[tenant_id] += 1
        task = asyncio.create_task(self._deliver(tenant_id, delivery))
        self._sending.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._sending.discard(done)
            self._in_flight[endpoint_id] -= 1
            if self._in_flight[endpoint_id] <= 0:
                del self._in_flight[endpoint_id]
            self._tenant_in_flight[tenant_id] -= 1
            if self._tenant_in_flight[tenant_id] <= 0:
                del self._tenant_in_flight[tenant_id]
            self._wake.set()  # a slot is free: claim more

        task.add_done_callback(finished)

    async def _deliver(self, tenant_id: uuid.UUID, delivery: asyncpg.Record) -> None:
        attempted_at = datetime.now(UTC)
        bound = {
            "tenant_id": str(tenant_id),
            "delivery_id": str(delivery["id"]),
            "webhook_id": str(delivery["endpoint_id"]),
            "attempt": delivery["attempts"],
        }
        try:
            outcome = await self._sender.send(
                delivery["url"],
                message_id=str(delivery["event_id"]),
                body=webhooks_service.message_body(delivery),
                secrets=webhooks_service.secrets_for_signing(delivery, self._keys, attempted_at),
            )
            async with tenancy.tenant_transaction(self._sessionmaker, tenant_id) as session:
                state = await webhooks_service.settle(
                    session,
                    tenant_id=tenant_id,
                    delivery=delivery,
                    outcome=outcome,
                    attempted_at=attempted_at,
                    schedule=self._schedule,
                )
        except Exception as exc:  # the lease brings the delivery back; this process goes on
            log.warning("webhook_attempt_failed", error=type(exc).__name__, **bound)
            return
        metrics.WEBHOOK_ATTEMPT_DURATION.observe(outcome.duration_ms / 1000)
        if state is DeliveryState.DELIVERED:
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
            latency = (datetime.now(UTC) - delivery["occurred_at"]).total_seconds()
            metrics.WEBHOOK_DELIVERY_LATENCY.observe(max(latency, 0.0))
        elif state is DeliveryState.PENDING:
            metrics.WEBHOOK_DELIVERIES.labels("retrying").inc()
        else:
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
        log.info(
            "webhook_attempt",
            state=state.value,
            status=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            **bound,
        )

    # --- notifications ---

    def _notified_by(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._notified.add(uuid.UUID(payload))
            self._wake.set()

    async def _listen(self, stopping: asyncio.Event) -> None:
        """Hold a LISTEN connection, reconnecting after an outage; each (re)connect asks for a
        full scan, for whatever was announced while nobody listened."""
        assert self._listen_dsn is not None
        while not stopping.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._listen_dsn, timeout=5)
                await connection.add_listener(webhooks_repository.CHANNEL, self._notified_by)
                self._next_full_scan = 0.0
                self._wake.set()
                while not stopping.is_set() and not connection.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), timeout=self._poll_seconds)
                    await connection.execute("SELECT 1")  # notice a dead connection
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("webhook_listen_failed", error=type(exc).__name__)
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=LISTEN_RETRY_SECONDS)
