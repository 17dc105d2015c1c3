"""Signing in and out of the console, its landing page and its static files."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from stockyard.auth import grants
from stockyard.auth.exceptions import InvalidGrant
from stockyard.auth.guard import client_ip, limit_by_ip
from stockyard.auth.pipeline import request_transaction
from stockyard.auth.tokens import verify_access_token
from stockyard.console.forms import text
from stockyard.console.pages import PREFIX, SECURITY_HEADERS, redirect, render, safe_next
from stockyard.console.pages import static_file as find_static_file
from stockyard.console.pipeline import (
    FORM_LIMITS,
    CrossSiteRequest,
    check_form_token,
    cookie_name,
    refuse_cross_site,
    same_token,
    sessions_of,
    sign_in_cookie_name,
)
from stockyard.console.sessions import (
    ConsoleSession,
    SessionStoreUnavailable,
    new_csrf_token,
    new_session_id,
)
from stockyard.core.errors import NotFound
from stockyard.core.principal import STAFF_ROLE
from stockyard.core.redis import REDIS_ERRORS
from stockyard.core.settings import Settings

router = APIRouter(prefix=PREFIX, include_in_schema=False)

SIGN_IN_TOKEN_SECONDS = 3600


def _set_cookie(response: Response, settings: Settings, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/",
        secure=settings.console_cookie_is_secure,
        httponly=True,
        samesite="lax",
    )


def _landing(record: ConsoleSession | None) -> str:
    return PREFIX + ("/support" if record is not None and record.is_staff else "/stock")


@router.get("/")
async def console_home(request: Request) -> Response:
    session_id = request.cookies.get(cookie_name(request.app.state.settings), "")
    record = await sessions_of(request).load(session_id) if 0 < len(session_id) <= 128 else None
    return redirect(_landing(record))


@router.get("/sign-in")
async def sign_in_page(request: Request, next: Annotated[str | None, Query()] = None) -> Response:
    settings: Settings = request.app.state.settings
    # The sign-in form's CSRF token: a random value in a cookie and in the form (a page of
    # another site can set neither), checked with the request's Origin/Sec-Fetch-Site.
    token = request.cookies.get(sign_in_cookie_name(settings)) or new_csrf_token()
    response = render(
        request,
        "sign_in.html",
        title="Sign in",
        csrf=token,
        next=safe_next(next),
        error=None,
        notice=None,
        tenant="",
        email="",
    )
    _set_cookie(response, settings, sign_in_cookie_name(settings), token, SIGN_IN_TOKEN_SECONDS)
    return response


@router.post("/sign-in", dependencies=[Depends(limit_by_ip)])
async def sign_in(request: Request) -> Response:
    """The API's password grant (staff: its staff grant), under the same per-address and
    per-account guards; its token pair becomes a console session."""
    state = request.app.state
    settings: Settings = state.settings
    refuse_cross_site(request)
    expected = request.cookies.get(sign_in_cookie_name(settings))
    form = await request.form(**FORM_LIMITS)
    if expected is None or not same_token(form.get("csrf_token"), expected):
        raise CrossSiteRequest("The sign-in form expired; reload the page.")
    tenant = text(form, "tenant", 63).lower()
    email = text(form, "email", 320)
    password = form.get("password")
    target = safe_next(text(form, "next", 2048))
    address = client_ip(request, settings.trusted_proxies)
    try:
        if not email or not isinstance(password, str) or not password:
            raise InvalidGrant("Enter your email and password.")
        if tenant:
            pair = await grants.password_grant(
                state.sessionmaker,
                settings,
                state.keyring,
                state.limiter,
                tenant_slug=tenant,
                email=email,
                password=password,
                address=address,
            )
        else:
            pair = await grants.staff_password_grant(
                state.sessionmaker,
                settings,
                state.keyring,
                state.limiter,
                email=email,
                password=password,
                address=address,
            )
    except InvalidGrant as failed:
        return render(
            request,
            "sign_in.html",
            status=400,
            title="Sign in",
            csrf=expected,
            next=target,
            error={"title": "Not signed in", "message": failed.message, "fields": []},
            notice=None,
            tenant=tenant,
            email=email,
        )
    claims = await verify_access_token(
        state.keyring, pair.access_token, issuer=settings.issuer, audience=settings.jwt_audience
    )
    record = ConsoleSession(
        access_token=pair.access_token,
        access_expires_at=time.time() + pair.expires_in,
        refresh_token=pair.refresh_token,
        csrf_token=new_csrf_token(),
        signed_in_at=time.time(),
        email=grants.normalize_email(email),
        tenant=None if claims.role == STAFF_ROLE else tenant,
        role=claims.role,
    )
    session_id = new_session_id()
    try:
        await sessions_of(request).save(session_id, record)
    except SessionStoreUnavailable:
        # No session to hold them: the tokens just granted are revoked, not left live.
        if pair.refresh_token is not None:
            async with request_transaction(state.sessionmaker) as session:
                await grants.revoke_token(
                    session, settings, state.keyring, state.limiter, token=pair.refresh_token
                )
        raise
    if target == PREFIX + "/":
        target = _landing(record)
    response = redirect(target)
    _set_cookie(
        response,
        settings,
        cookie_name(settings),
        session_id,
        settings.console_absolute_timeout_seconds,
    )
    # A __Host- cookie is only ever set, deleted included, with Secure.
    response.delete_cookie(
        sign_in_cookie_name(settings),
        path="/",
        secure=settings.console_cookie_is_secure,
        httponly=True,
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """Ends the session and its token family (the API's revocation), then the sign-in page."""
    state = request.app.state
    settings: Settings = state.settings
    name = cookie_name(settings)
    session_id = request.cookies.get(name, "")
    record = await sessions_of(request).load(session_id) if 0 < len(session_id) <= 128 else None
    if record is not None:
        refuse_cross_site(request)
        await check_form_token(request, record.csrf_token)
        if record.refresh_token is not None:
            async with request_transaction(state.sessionmaker) as session:
                await grants.revoke_token(
                    session, settings, state.keyring, state.limiter, token=record.refresh_token
                )
        with contextlib.suppress(*REDIS_ERRORS):
            await sessions_of(request).destroy(session_id)
    response = redirect(PREFIX + "/sign-in")
    response.delete_cookie(name, path="/", secure=settings.console_cookie_is_secure, httponly=True)
    return response


@router.get("/static/{name}")
async def static(name: str, v: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    found = find_static_file(name)
    if found is None:
        raise NotFound("No such file.")
    # Pages name each file with its content hash: that URL never changes content.
    cache = "public, max-age=31536000, immutable" if v == found.version else "no-cache"
    return Response(
        found.body,
        media_type=found.media_type,
        headers={**SECURITY_HEADERS, "Cache-Control": cache, "ETag": f'"{found.version}"'},
    )
