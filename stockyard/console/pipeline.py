"""How a console request becomes a caller: cookie -> console session -> the API's own pipeline.

The console does not authorize anything itself. Its session holds the API token pair of the
sign-in; each request hands the access token to `auth.pipeline.open_tenant_context` (verify,
limiter and revocation in one Redis round trip, the tenant transaction, PostgreSQL's word on
revocation) and routes admit callers with the same `require(scope)` as the API, fed by
`console_principal`. Cookies are read here only: `/api/v1` never looks at one.

Before any of it, a state-changing request must come from our own pages: its `Origin` and
`Sec-Fetch-Site` (when the browser sends them) must be our own origin, and its form must carry
the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.auth import grants
from stockyard.auth.exceptions import InvalidGrant
from stockyard.auth.pipeline import (
    open_support_context,
    open_tenant_context,
    request_transaction,
    require,
)
from stockyard.auth.scopes import Scope
from stockyard.console.sessions import ConsoleSession, ConsoleSessions
from stockyard.core.errors import AppError, Forbidden
from stockyard.core.principal import AccessClaims
from stockyard.core.settings import Settings

# Form limits of every console form: a handful of short fields, never a file.
FORM_LIMITS: dict[str, Any] = {"max_files": 0, "max_fields": 32, "max_part_size": 16 * 1024}
REFRESH_WAIT_SECONDS = 3.0


class SignInRequired(AppError):
    """No console session, or it ended: the browser goes to the sign-in page."""

    status_code = 401
    code = "sign_in_required"
    message = "Sign in to continue."


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"
    message = "This form must be sent from the console's own pages."


def cookie_name(settings: Settings) -> str:
    # `__Host-`: the browser accepts it only Secure, for this host, path /, no Domain.
    return "__Host-stockyard" if settings.console_cookie_is_secure else "stockyard_console"


def sign_in_cookie_name(settings: Settings) -> str:
    # The sign-in form's own CSRF token, before there is a session to hold one.
    return "__Host-stockyard-sign-in" if settings.console_cookie_is_secure else "stockyard_sign_in"


def sessions_of(request: Request) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.console_sessions
    return sessions


def refuse_cross_site(request: Request) -> None:
    """A state-changing request must come from our own origin. Browsers send
    `Sec-Fetch-Site` and `Origin` on form posts; either naming another site is refused. Where
    neither is sent (an old browser, a script), the CSRF token alone decides."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        raise CrossSiteRequest()
    origin = request.headers.get("origin")
    if origin is None:
        return
    settings: Settings = request.app.state.settings
    own = {request.headers.get("host", ""), urlsplit(settings.public_url).netloc}
    if origin == "null" or urlsplit(origin).netloc not in own:
        raise CrossSiteRequest()


def same_token(presented: object, expected: str) -> bool:
    """A constant-time comparison that any presented value survives (compare_digest refuses
    non-ASCII text: compared as UTF-8 bytes)."""
    if not isinstance(presented, str) or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


async def check_form_token(request: Request, expected: str) -> None:
    form = await request.form(**FORM_LIMITS)
    if not same_token(form.get("csrf_token"), expected):
        raise CrossSiteRequest("The form's security token is missing or stale; reload the page.")


@dataclass(frozen=True, slots=True)
class ConsoleCaller:
    """A signed-in console user inside the request's transaction (tenant-scoped for tenant
    pages; the support role's for staff pages)."""

    session: AsyncSession
    principal: AccessClaims
    console: ConsoleSession
    session_id: str


async def _signed_in(request: Request) -> tuple[str, ConsoleSession]:
    writes = request.method not in {"GET", "HEAD"}
    if writes:
        # Before anything else: a post from another site is refused whatever it carries.
        refuse_cross_site(request)
    session_id = request.cookies.get(cookie_name(request.app.state.settings))
    if not session_id or len(session_id) > 128:
        raise SignInRequired()
    record = await sessions_of(request).load(session_id)
    if record is None:
        raise SignInRequired("Your session ended; sign in again.")
    if writes:
        await check_form_token(request, record.csrf_token)
    return session_id, record


async def _with_fresh_tokens(
    request: Request, session_id: str, record: ConsoleSession
) -> ConsoleSession:
    """Rotate the refresh token shortly before the access token expires, one request per
    session at a time (the others use the current token, or wait for the new one)."""
    if record.refresh_token is None or not record.needs_refresh(time.time()):
        return record
    sessions = sessions_of(request)
    holder = await sessions.lock_refresh(session_id)
    if holder is None:
        deadline = time.monotonic() + REFRESH_WAIT_SECONDS
        while record.access_expires_at <= time.time() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            reloaded = await sessions.load(session_id)
            if reloaded is None:
                raise SignInRequired("Your session ended; sign in again.")
            record = reloaded
        return record
    state = request.app.state
    try:
        current = await sessions.load(session_id)
        if current is None:
            raise SignInRequired("Your session ended; sign in again.")
        if current.refresh_token is None or not current.needs_refresh(time.time()):
            return current
        try:
            async with request_transaction(state.sessionmaker) as session:
                pair = await grants.refresh_grant(
                    session,
                    state.sessionmaker,
                    state.settings,
                    state.keyring,
                    state.limiter,
                    refresh_token=current.refresh_token,
                )
        except InvalidGrant:  # revoked, expired, reused (RefreshTokenReused is one)
            await sessions.destroy(session_id)
            raise SignInRequired("Your session ended; sign in again.") from None
        record = current.with_tokens(pair.access_token, pair.expires_in, pair.refresh_token)
        await sessions.save(session_id, record)
        return record
    finally:
        await sessions.unlock_refresh(session_id, holder)


async def console_tenant_context(request: Request) -> AsyncIterator[ConsoleCaller]:
    session_id, record = await _signed_in(request)
    if record.is_staff:
        raise Forbidden("Platform staff use the support pages.")
    record = await _with_fresh_tokens(request, session_id, record)
    async with open_tenant_context(request, record.access_token) as context:
        yield ConsoleCaller(context.session, context.principal, record, session_id)


async def console_support_context(request: Request) -> AsyncIterator[ConsoleCaller]:
    session_id, record = await _signed_in(request)
    if not record.is_staff:
        raise Forbidden("The support pages are for platform staff.")
    async with open_support_context(request, record.access_token) as context:
        yield ConsoleCaller(context.session, context.principal, record, session_id)


ConsoleContext = Annotated[ConsoleCaller, Depends(console_tenant_context, scope="function")]
SupportConsoleContext = Annotated[ConsoleCaller, Depends(console_support_context, scope="function")]


async def console_principal(caller: ConsoleContext) -> AccessClaims:
    return caller.principal


def console_require(*scopes: Scope) -> Callable[..., Coroutine[Any, Any, AccessClaims]]:
    """`auth.pipeline.require`, its principal from the console session."""
    return require(*scopes, principal_from=console_principal)


InventoryReader = Annotated[AccessClaims, Depends(console_require(Scope.INVENTORY_READ))]
InventoryWriter = Annotated[AccessClaims, Depends(console_require(Scope.INVENTORY_WRITE))]
UsersAdmin = Annotated[AccessClaims, Depends(console_require(Scope.USERS_ADMIN))]
ClientsAdmin = Annotated[AccessClaims, Depends(console_require(Scope.CLIENTS_ADMIN))]
AuditReader = Annotated[AccessClaims, Depends(console_require(Scope.AUDIT_READ))]
WebhooksAdmin = Annotated[AccessClaims, Depends(console_require(Scope.WEBHOOKS_ADMIN))]
