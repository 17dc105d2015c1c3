"""The request pipeline: how a request becomes a verified caller inside its tenant's
transaction. Read top to bottom, in the order a request passes through it:

1. bearer token -> verified claims (signature, issuer, audience, expiry; no database);
2. the limiter, which in the same Redis round trip says whether the session or the token was
   revoked (a forged, expired, revoked or over-limit token never costs a database connection);
3. the request's one transaction, scoped to the token's tenant by a transaction-local setting
   that row-level security reads;
4. when Redis had no answer on revocation, PostgreSQL decides (and Redis learns it);
5. `require(scope)`: the only authorization check routes make.

The aliases routes declare (`TenantSession`, `InventoryReader`, …) are at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.openapi.models import (
    HTTPBearer,
    OAuth2,
    OAuthFlowClientCredentials,
    OAuthFlowPassword,
    OAuthFlows,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.auth import repository as auth_repository
from stockyard.auth.keys import KeyRing
from stockyard.auth.limiter import RateLimiter, Revocation, revoked_token_of
from stockyard.auth.scopes import Scope
from stockyard.auth.tokens import verify_access_token
from stockyard.core import tenancy
from stockyard.core.database import TenantReads, TenantWrites
from stockyard.core.errors import Forbidden, InvalidToken, Unauthorized, bearer_challenge
from stockyard.core.principal import AccessClaims
from stockyard.core.settings import Settings
from stockyard.tenants.limits import TenantLimits

# How the document describes the token every authenticated operation takes (api/document.py
# attaches them to the operations that depend on this pipeline): a bearer token, and the OAuth
# 2.0 flows that issue it, so /docs can sign in with it. They are descriptions only: the
# pipeline reads the Authorization header itself, one dependency fewer per request.
SECURITY_SCHEMES = {
    "HTTPBearer": HTTPBearer(description="An access token from /api/v1/auth/token."),
    "OAuth2": OAuth2(
        flows=OAuthFlows(
            password=OAuthFlowPassword(
                tokenUrl="/api/v1/auth/token", scopes={scope.value: scope.name for scope in Scope}
            ),
            clientCredentials=OAuthFlowClientCredentials(
                tokenUrl="/api/v1/auth/token", scopes={scope.value: scope.name for scope in Scope}
            ),
        ),
        description="Password grant (username = email, plus a `tenant` form field) or client "
        "credentials; send the access token as a bearer token.",
    ),
}


@dataclass(frozen=True, slots=True)
class Authenticated:
    claims: AccessClaims
    # Whether Redis already vouched for the session; if not, step 4 asks PostgreSQL.
    revocation: Revocation


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("A bearer access token is required.")
    return token


# Steps 1 and 2. Called by the session dependencies below, not declared as a dependency of its
# own: the pipeline runs on every authenticated request, and each dependency is one more node
# FastAPI solves per request. For the same reason it reads what the lifespan built from
# app.state itself rather than through the typed dependencies (SettingsDep, LimiterDep, ...).
async def authenticate(request: Request, token: str) -> Authenticated:
    """Steps 1 and 2 for `token`: the bearer token of an API request, or the access token the
    console keeps for its signed-in user (console/sessions.py)."""
    state = request.app.state
    settings: Settings = state.settings
    limiter: RateLimiter = state.limiter
    keyring: KeyRing = state.keyring
    tenant_limits: TenantLimits = state.tenant_limits
    claims = await verify_access_token(
        keyring, token, issuer=settings.issuer, audience=settings.jwt_audience
    )
    structlog.contextvars.bind_contextvars(
        tenant_id=str(claims.tenant_id), subject=str(claims.subject)
    )
    request.state.claims = claims
    if not settings.rate_limit_enabled:
        return Authenticated(claims=claims, revocation=Revocation.UNKNOWN)
    per_minute, burst = await tenant_limits.get(claims.tenant_id)
    decision = await limiter.check_session(
        claims.session_id, token_id=claims.token_id, per_minute=per_minute, burst=burst
    )
    if decision.limit:
        request.state.rate_limit_headers = decision.headers()
    if decision.revocation is Revocation.REVOKED:
        raise InvalidToken("The session has been revoked.")
    decision.raise_if_limited()
    return Authenticated(claims=claims, revocation=decision.revocation)


# Step 3: one transaction per request, committed by the dependency when the route returns
# (before the response is sent: scope="function"), rolled back when it raises.
@asynccontextmanager
async def request_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        await session.begin()
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


@dataclass(frozen=True, slots=True)
class CallerContext:
    """A caller whose token, limit and revocation state have been checked, and the request's
    transaction, opened for it."""

    session: AsyncSession
    principal: AccessClaims


@asynccontextmanager
async def open_tenant_context(request: Request, token: str) -> AsyncIterator[CallerContext]:
    """The tenant comes from the verified token alone; the transaction is scoped to it before
    any statement runs, so row-level security shows this request that tenant's rows only."""
    auth = await authenticate(request, token)
    claims = auth.claims
    if claims.is_staff:
        raise Forbidden("Staff tokens can't reach tenant data.")
    state = request.app.state
    async with request_transaction(state.sessionmaker) as session:
        tenancy.scope_to_tenant(session, claims.tenant_id)
        if auth.revocation is Revocation.UNKNOWN:
            await _confirm_live_in_postgres(session, claims, state.settings, state.limiter)
            # Give the connection back until the route needs one: a route that first does
            # slow CPU work (hashing a password) must not hold it. Its own work begins a
            # fresh transaction, scoped to the tenant again, at its first statement.
            await session.commit()
        yield CallerContext(session=session, principal=claims)


async def tenant_context(request: Request) -> AsyncIterator[CallerContext]:
    async with open_tenant_context(request, _bearer_token(request)) as context:
        yield context


# Steps 1 to 5 for the hot routes, in one dependency each (each one more is a node FastAPI
# solves per request): the same checks in the same order as `tenant_context` and `require`,
# then a transaction on one of the driver's pools in place of an ORM session.
async def _authorized_caller(request: Request, needed: frozenset[Scope]) -> AccessClaims:
    auth = await authenticate(request, _bearer_token(request))
    claims = auth.claims
    if claims.is_staff:
        raise Forbidden("Staff tokens can't reach tenant data.")
    state = request.app.state
    if auth.revocation is Revocation.UNKNOWN:
        async with request_transaction(state.sessionmaker) as session:
            tenancy.scope_to_tenant(session, claims.tenant_id)
            await _confirm_live_in_postgres(session, claims, state.settings, state.limiter)
    _check_scopes(claims, needed)
    return claims


async def inventory_reads(request: Request) -> AsyncIterator[TenantReads]:
    claims = await _authorized_caller(request, _INVENTORY_READ)
    state = request.app.state
    async with TenantReads(
        state.reader_pool, claims.tenant_id, timeout=state.settings.db_timeout_seconds
    ) as reads:
        yield reads


@dataclass(frozen=True, slots=True)
class WriterContext:
    """A caller holding inventory:write, and the request's transaction on the writer pool,
    opened for it and committed when the route returns (rolled back when it raises)."""

    session: TenantWrites
    principal: AccessClaims


async def inventory_writes(request: Request) -> AsyncIterator[WriterContext]:
    claims = await _authorized_caller(request, _INVENTORY_WRITE)
    state = request.app.state
    async with TenantWrites(
        state.writer_pool, claims.tenant_id, timeout=state.settings.db_timeout_seconds
    ) as writes:
        yield WriterContext(session=writes, principal=claims)


# Step 4: Redis had nothing on this session: PostgreSQL decides, Redis learns it.
async def _confirm_live_in_postgres(
    session: AsyncSession, claims: AccessClaims, settings: Settings, limiter: RateLimiter
) -> None:
    family_revoked = await auth_repository.is_session_revoked(session, claims)
    token_revoked = not family_revoked and (
        await auth_repository.is_access_token_revoked(session, claims)
    )
    if settings.rate_limit_enabled:
        await limiter.remember(
            claims.session_id, Revocation.REVOKED if family_revoked else Revocation.LIVE
        )
        if token_revoked:
            await limiter.revoke([], [revoked_token_of(claims)])
    if family_revoked:
        raise InvalidToken("The session has been revoked.")
    if token_revoked:
        raise InvalidToken("The access token has been revoked.")


@asynccontextmanager
async def open_support_context(request: Request, token: str) -> AsyncIterator[CallerContext]:
    """A transaction for platform staff: no tenant, and the routes that use it switch to the
    support role, which the database lets read the audit trail and nothing else."""
    auth = await authenticate(request, token)
    claims = auth.claims
    if not claims.is_staff or Scope.SUPPORT_READ not in claims.scopes:
        raise Forbidden("Support routes are for platform staff.")
    async with request_transaction(request.app.state.sessionmaker) as session:
        if auth.revocation is Revocation.UNKNOWN and await auth_repository.is_session_revoked(
            session, claims
        ):
            raise InvalidToken("The session has been revoked.")
        yield CallerContext(session=session, principal=claims)


async def support_context(request: Request) -> AsyncIterator[CallerContext]:
    async with open_support_context(request, _bearer_token(request)) as context:
        yield context


# The dependencies that authenticate: the document marks every operation that reaches one.
AUTHENTICATING_DEPENDENCIES = frozenset(
    {tenant_context, support_context, inventory_reads, inventory_writes}
)

TenantContext = Annotated[CallerContext, Depends(tenant_context, scope="function")]
SupportContext = Annotated[CallerContext, Depends(support_context, scope="function")]


async def get_tenant_session(context: TenantContext) -> AsyncSession:
    return context.session


async def get_support_session(context: SupportContext) -> AsyncSession:
    return context.session


async def get_support_principal(context: SupportContext) -> AccessClaims:
    return context.principal


async def get_unscoped_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A request transaction with no tenant yet: sign-in and signup choose it themselves.
    Until they do, row-level security shows this session nothing."""
    async with request_transaction(request.app.state.sessionmaker) as session:
        yield session


TenantSession = Annotated[AsyncSession, Depends(get_tenant_session)]
SupportSession = Annotated[AsyncSession, Depends(get_support_session)]
SupportPrincipal = Annotated[AccessClaims, Depends(get_support_principal)]
UnscopedSession = Annotated[AsyncSession, Depends(get_unscoped_session, scope="function")]


# Step 5. The principal comes with the tenant transaction, so it exists only once step 4 has
# confirmed the session is live.
async def get_principal(context: TenantContext) -> AccessClaims:
    return context.principal


CurrentPrincipal = Annotated[AccessClaims, Depends(get_principal)]


def require(
    *scopes: Scope,
    principal_from: Callable[..., Coroutine[Any, Any, AccessClaims]] = get_principal,
) -> Callable[..., Coroutine[Any, Any, AccessClaims]]:
    """A dependency that admits callers holding every scope named, else 403 `forbidden` with
    an RFC 6750 `insufficient_scope` challenge naming what the token lacks. The console
    passes its own `principal_from` (the same pipeline, its token from the console session):
    one authorization check for both doors."""
    needed = frozenset(scopes)

    async def _require(
        principal: AccessClaims = Depends(principal_from),  # noqa: B008
    ) -> AccessClaims:
        _check_scopes(principal, needed)
        return principal

    return _require


def _check_scopes(principal: AccessClaims, needed: frozenset[Scope]) -> None:
    missing = needed - principal.scopes
    if missing:
        raise Forbidden(
            "This needs the scope " + " ".join(sorted(missing)) + ".",
            details={"missing_scopes": sorted(missing)},
            headers={
                "WWW-Authenticate": bearer_challenge(
                    error="insufficient_scope", scope=" ".join(sorted(needed))
                )
            },
        )


_INVENTORY_READ = frozenset({Scope.INVENTORY_READ})
_INVENTORY_WRITE = frozenset({Scope.INVENTORY_WRITE})


InventoryReader = Annotated[AccessClaims, Depends(require(Scope.INVENTORY_READ))]
# A hot read route's transaction: read-only, in the caller's tenant, scope inventory:read.
InventoryReads = Annotated[TenantReads, Depends(inventory_reads, scope="function")]
InventoryWriter = Annotated[AccessClaims, Depends(require(Scope.INVENTORY_WRITE))]
# A ledger write route's caller (scope inventory:write) and its transaction, in its tenant.
InventoryWrites = Annotated[WriterContext, Depends(inventory_writes, scope="function")]
UsersAdmin = Annotated[AccessClaims, Depends(require(Scope.USERS_ADMIN))]
ClientsAdmin = Annotated[AccessClaims, Depends(require(Scope.CLIENTS_ADMIN))]
AuditReader = Annotated[AccessClaims, Depends(require(Scope.AUDIT_READ))]
WebhooksAdmin = Annotated[AccessClaims, Depends(require(Scope.WEBHOOKS_ADMIN))]

# For routes that need a scope but have no use for the principal itself:
# `@router.get(..., dependencies=[READS_INVENTORY])`.
READS_INVENTORY = Depends(require(Scope.INVENTORY_READ))
ADMINISTERS_USERS = Depends(require(Scope.USERS_ADMIN))
ADMINISTERS_CLIENTS = Depends(require(Scope.CLIENTS_ADMIN))
READS_AUDIT = Depends(require(Scope.AUDIT_READ))
ADMINISTERS_WEBHOOKS = Depends(require(Scope.WEBHOOKS_ADMIN))
