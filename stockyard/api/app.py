"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.middleware.body_limit import (
    MAX_BODY_SIZE_SCOPE_KEY,
    RequestBodyLimitMiddleware,
)

from stockyard import __version__
from stockyard.api.document import install_document, operation_id
from stockyard.api.errors import install_error_handlers
from stockyard.api.health import router as health_router
from stockyard.api.metrics import router as metrics_router
from stockyard.api.middleware import RequestContextMiddleware
from stockyard.audit.endpoints import router as audit_router
from stockyard.auth import repository as auth_repository
from stockyard.auth.admin_endpoints import router as admin_router
from stockyard.auth.keys import KeyRing
from stockyard.auth.limiter import RateLimiter, RevokedToken
from stockyard.auth.oauth_endpoints import router as auth_router
from stockyard.auth.oauth_endpoints import well_known as well_known_router
from stockyard.auth.signup_endpoints import router as signup_router
from stockyard.console.endpoints import router as console_router
from stockyard.console.sessions import ConsoleSessions
from stockyard.core import metrics
from stockyard.core.database import (
    app_url,
    create_driver_pool,
    create_engine,
    create_sessionmaker,
    listen_dsn,
)
from stockyard.core.errors import PayloadTooLarge
from stockyard.core.logging import configure_logging
from stockyard.core.redis import RedisClient, create_redis
from stockyard.core.settings import Settings, get_settings
from stockyard.events.endpoints import router as events_router
from stockyard.inventory.catalogue.endpoints import router as catalogue_router
from stockyard.inventory.ledger import maintenance
from stockyard.inventory.ledger.endpoints import router as ledger_router
from stockyard.inventory.reservations.endpoints import router as reservations_router
from stockyard.operations.endpoints import router as operations_router
from stockyard.tenants.limits import TenantLimits
from stockyard.webhooks.dispatcher import Dispatcher
from stockyard.webhooks.endpoints import router as webhooks_router

log = structlog.get_logger()

REVOCATION_SYNC_INTERVAL_SECONDS = 1.0
# Allocations (net of frees) between two passes of the collector over the young generation;
# the interpreter's default is 700.
YOUNG_COLLECTION_THRESHOLD = 20_000


@dataclass
class Services:
    """What the lifespan builds and closes. Routes and domain services never see this
    object: each takes the pieces it uses through its own typed dependency
    (`SettingsDep`, `LimiterDep`, …), which read them from `app.state`."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # The driver's pools of the hot routes: reads, and the ledger's writes apart from them
    # (a write waiting on a row lock must not hold a connection a read needs).
    reader_pool: asyncpg.Pool
    writer_pool: asyncpg.Pool
    redis: RedisClient
    keyring: KeyRing
    limiter: RateLimiter
    tenant_limits: TenantLimits
    console_sessions: ConsoleSessions

    def install(self, app: FastAPI) -> None:
        app.state.services = self
        for field in fields(self):
            setattr(app.state, field.name, getattr(self, field.name))


def build_services(settings: Settings) -> Services:
    if settings.redis_url is None or settings.secret_key is None:
        raise RuntimeError("the API needs STOCKYARD_REDIS_URL and STOCKYARD_SECRET_KEY set")
    engine = create_engine(app_url(settings), settings)
    sessionmaker = create_sessionmaker(engine)
    redis = create_redis(settings.redis_url, settings)
    return Services(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        reader_pool=create_driver_pool(app_url(settings), settings),
        writer_pool=create_driver_pool(app_url(settings), settings),
        redis=redis,
        keyring=KeyRing(
            sessionmaker,
            secret_key=settings.secret_key.get_secret_value(),
            max_age=settings.signing_key_cache_seconds,
        ),
        limiter=RateLimiter(
            redis,
            prefix=settings.redis_key_prefix,
            fail_open=settings.rate_limit_fail_open,
            revocation_ttl_seconds=settings.access_token_ttl_seconds + 60,
        ),
        tenant_limits=TenantLimits(
            sessionmaker,
            default_per_minute=settings.rate_limit_per_minute,
            default_burst=settings.rate_limit_burst,
        ),
        console_sessions=ConsoleSessions(redis, settings),
    )


async def sync_revocations(services: Services) -> None:
    """Re-seed Redis with the families revoked within one access-token lifetime, so a Redis
    restart or FLUSHALL never brings a revoked session back. Runs at start and whenever the
    limiter has seen Redis come back."""
    since = datetime.now(UTC) - timedelta(seconds=services.settings.access_token_ttl_seconds + 60)
    read_started_at = time.monotonic()
    async with services.sessionmaker() as session, session.begin():
        revoked = await auth_repository.revoked_sessions_since(session, since)
        tokens = await auth_repository.revoked_access_tokens_since(session, since)
    now = datetime.now(UTC)
    await services.limiter.revoke(
        revoked,
        [
            RevokedToken(session_id, jti, int((expires_at - now).total_seconds()) + 1)
            for session_id, jti, expires_at in tokens
        ],
    )
    services.limiter.reseeded(read_started_at)
    log.info("revocations_seeded", count=len(revoked))


async def _every(
    interval: float, stopping: asyncio.Event, job: Callable[[], Awaitable[None]], name: str
) -> None:
    """Run `job` every `interval` seconds until shutdown. Shutdown waits for a running job to
    finish rather than cancelling it mid-query (a cancelled query can wedge its connection)."""
    while not stopping.is_set():
        try:
            await job()
        except Exception as exc:  # the loop must outlive the outages it is there to repair
            log.warning("background_job_failed", job=name, error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval)


async def _sweep(services: Services) -> None:
    await maintenance.sweep(services.sessionmaker)


async def _sync_revocations_if_needed(services: Services) -> None:
    # ping() flags a reseed when it sees Redis come back; a failed one stays pending.
    if await services.limiter.ping() and services.limiter.needs_reseed:
        await sync_revocations(services)


async def refuse_declared_oversized_body(request: Request) -> None:
    """Starlette's body limit acts as the body is read; a route that never reads its body
    (a DELETE, a bodiless POST) would run, and commit, before being answered 413. A declared
    Content-Length over the route's limit is refused here, before the route runs."""
    limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    declared = request.headers.get("content-length", "")
    if isinstance(limit, int) and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        services.install(app)
        # They open no connection yet (min_size=0).
        await services.reader_pool
        await services.writer_pool
        await services.keyring.load()
        stopping = asyncio.Event()
        tasks = [
            asyncio.create_task(
                _every(
                    REVOCATION_SYNC_INTERVAL_SECONDS,
                    stopping,
                    lambda: _sync_revocations_if_needed(services),
                    "revocation_sync",
                )
            ),
            asyncio.create_task(
                _every(
                    settings.sweep_interval_seconds,
                    stopping,
                    lambda: _sweep(services),
                    "sweep",
                )
            ),
        ]
        if settings.webhook_dispatch:
            dispatcher = Dispatcher(
                services.sessionmaker, settings, listen_dsn=listen_dsn(settings)
            )
            tasks.append(asyncio.create_task(dispatcher.run(stopping)))
        metrics.NODE_INFO.labels(settings.node_name, __version__).set(1)
        # What exists by now (modules, routes, schemas, the engine: ~180,000 objects) lives as
        # long as the app. Frozen, the collector's full passes skip it: one stalls every
        # request in flight ~7 ms instead of ~100 ms (#15: a history page's p99 at 16
        # connections fell from ~115 ms to ~25 ms, its CPU per request by ~12 %).
        gc.collect()
        gc.freeze()
        # A young-generation pass walks every container object still alive, and under load
        # that is mostly the requests in flight: at the interpreter's default threshold a
        # pass ran every ~5 history pages (1,256 passes in 8 s, ~0.24 ms each) and promoted
        # those requests' objects towards the older generations, whose passes followed. At
        # YOUNG_COLLECTION_THRESHOLD, ~14 passes in 30 s of the same load (#15: history CPU
        # per page 0.95x side by side, eight rounds); cyclic garbage waits a little longer.
        thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
        log.info("api_started", version=__version__, frozen_objects=gc.get_freeze_count())
        try:
            yield
        finally:
            # An app started and stopped in a process that goes on (the tests) leaves its
            # objects collectable again, on the collector's schedule as it found it.
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            stopping.set()
            # The dispatcher lets its sends in flight finish, each bounded by its timeout.
            _, pending = await asyncio.wait(tasks, timeout=settings.webhook_timeout_seconds + 10)
            for task in pending:
                task.cancel()
            await services.limiter.drain()
            await services.redis.aclose()
            await services.reader_pool.close()
            await services.writer_pool.close()
            await services.engine.dispose()

    app = FastAPI(
        title="Stockyard",
        version=__version__,
        description="Multi-tenant inventory API.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_declared_oversized_body)],
        generate_unique_id_function=operation_id,
    )
    install_document(app)
    install_error_handlers(app)
    # Starlette's own body limit: decided from Content-Length before the body is read and
    # enforced while it streams in; routes that need more (bulk ingest) raise it with their
    # own `max_body_size`. Inside the request-context middleware, so its 413 leaves as the
    # envelope with the request id.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, hsts_max_age=settings.hsts_max_age_seconds)
    app.include_router(health_router)
    app.include_router(well_known_router)
    app.include_router(signup_router)
    app.include_router(auth_router)
    app.include_router(admin_router)
    app.include_router(catalogue_router)
    app.include_router(ledger_router)
    app.include_router(reservations_router)
    app.include_router(events_router)
    app.include_router(webhooks_router)
    app.include_router(audit_router)
    app.include_router(operations_router)
    app.include_router(metrics_router)
    app.include_router(console_router)
    return app
