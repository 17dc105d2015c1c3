"""Console sessions: the cookie, its Redis record, its bond to the API token family, its
timeouts, and the CSRF and origin checks every form post passes."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import asyncpg
import httpx
from fastapi import FastAPI

from stockyard.console.pipeline import cookie_name
from stockyard.console.sessions import ConsoleSession, ConsoleSessions
from stockyard.core.settings import Settings
from tests.conftest import make_settings, running_app
from tests.support.console import SAME_ORIGIN, ConsoleUser
from tests.support.crew import add_user
from tests.support.helpers import PASSWORD, Tenant, bearer, password_login
from tests.support.inventory import Inventory
from tests.support.services import TestServices


def _session_id(user: ConsoleUser) -> str:
    value = user.http.cookies.get("stockyard_console")
    assert value
    return value


def _sessions(app: FastAPI) -> ConsoleSessions:
    sessions: ConsoleSessions = app.state.console_sessions
    return sessions


async def test_sign_in_sets_an_http_only_lax_cookie_and_pages_carry_the_security_headers(
    app: FastAPI, tenant: Tenant
) -> None:
    async with ConsoleUser(app) as user:
        response = await user.sign_in(tenant=tenant.slug, email=tenant.owner_email)
        assert response.status_code == 303
        cookie = next(
            value
            for name, value in response.headers.multi_items()
            if name == "set-cookie" and value.startswith("stockyard_console=")
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        # Local development over http: no Secure flag, so no __Host- prefix either.
        assert "Secure" not in cookie
        page = await user.get("/console/stock")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "same-origin"
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text and " style=" not in page.text


def test_a_secure_deployment_names_the_cookie_host_prefixed_and_secure(
    settings: Settings,
) -> None:
    secure = settings.model_copy(update={"public_url": "https://api.example.com"})
    assert secure.console_cookie_is_secure
    assert cookie_name(secure) == "__Host-stockyard"
    forced = secure.model_copy(update={"console_secure_cookie": False})
    assert cookie_name(forced) == "stockyard_console"


async def test_a_wrong_password_is_a_clear_page_with_the_request_id(
    app: FastAPI, tenant: Tenant
) -> None:
    async with ConsoleUser(app) as user:
        await user.get("/console/sign-in")
        response = await user.post(
            "/console/sign-in",
            {"tenant": tenant.slug, "email": tenant.owner_email, "password": "not it at all"},
        )
        assert response.status_code == 400
        assert "The email, password or tenant is wrong." in response.text
        assert response.headers["x-request-id"] in response.text
        assert "stockyard_console" not in user.http.cookies


async def test_the_console_cookie_is_never_accepted_by_the_api(
    app: FastAPI, tenant: Tenant
) -> None:
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        for path in ("/api/v1/me", "/api/v1/stock", "/api/v1/users"):
            response = await user.http.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"


async def test_a_post_from_another_origin_or_without_its_token_is_refused_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, inv: Inventory
) -> None:
    sku = (await inv.product())["sku"]
    code = (await inv.location())["code"]
    receipt = {"kind": "receipt", "sku": sku, "location": code, "quantity": "3"}
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        await user.get("/console/movements/new")
        refusals = {
            "no token": await user.post("/console/movements/new", receipt, csrf=""),
            "a wrong token": await user.post("/console/movements/new", receipt, csrf="x" * 43),
            "another origin": await user.post(
                "/console/movements/new",
                receipt,
                headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
            ),
            "a sibling site": await user.post(
                "/console/movements/new", receipt, headers={"Sec-Fetch-Site": "same-site"}
            ),
            "an opaque origin": await user.post(
                "/console/movements/new", receipt, headers={"Origin": "null"}
            ),
        }
        for why, response in refusals.items():
            assert response.status_code == 403, why
            assert response.headers["x-request-id"] in response.text, why
        accepted = await user.post("/console/movements/new", receipt)
        assert accepted.status_code == 303, accepted.text
    history = await client.get("/api/v1/movements", params={"sku": sku}, headers=tenant.headers)
    assert [m["delta"] for m in history.json()["items"]] == [3]


async def test_a_sign_in_form_posted_without_its_own_token_is_refused(
    app: FastAPI, tenant: Tenant
) -> None:
    async with ConsoleUser(app) as user:
        response = await user.http.post(
            "/console/sign-in",
            data={"tenant": tenant.slug, "email": tenant.owner_email, "password": PASSWORD},
            headers=SAME_ORIGIN,
        )
        assert response.status_code == 403
        assert "stockyard_console" not in user.http.cookies


async def test_revoking_the_token_family_ends_the_console_session(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A password change through the API ends the user's other sessions: the console's too."""
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        session_id = _session_id(user)
        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": PASSWORD + " again"},
            headers=tenant.headers,
        )
        assert changed.status_code == 204, changed.text
        response = await user.get("/console/stock")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/sign-in?next=/console/stock"
        # The record is gone with the cookie: signing in is the only way back.
        assert "stockyard_console" not in user.http.cookies
        assert await app.state.redis.exists(_sessions(app)._key(session_id)) == 0


async def test_deactivating_a_user_ends_their_console_session(
    app: FastAPI, tenant: Tenant, client: httpx.AsyncClient
) -> None:
    user_id, _ = await add_user(client, tenant, "member")
    email = (await client.get(f"/api/v1/users/{user_id}", headers=tenant.headers)).json()["email"]
    async with ConsoleUser(app) as member, ConsoleUser(app) as owner:
        await member.signed_in(tenant=tenant.slug, email=email)
        await owner.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        await owner.get("/console/users")
        done = await owner.post(f"/console/users/{user_id}/deactivate")
        assert done.status_code == 303
        shown = await owner.get(done.headers["location"])
        assert f"{email} is deactivated" in shown.text
        assert (await member.get("/console/stock")).status_code == 303
        signed_out = await member.sign_in(tenant=tenant.slug, email=email)
        assert signed_out.status_code == 400


async def test_sign_out_ends_the_session_and_its_token_family(app: FastAPI, tenant: Tenant) -> None:
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        session_id = _session_id(user)
        record = await _sessions(app).load(session_id)
        assert record is not None and record.refresh_token is not None
        response = await user.post("/console/sign-out")
        assert response.status_code == 303
        assert await _sessions(app).load(session_id) is None
        # The API refresh token of that session is revoked with its family.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            refreshed = await api.post(
                "/api/v1/auth/token",
                data={"grant_type": "refresh_token", "refresh_token": record.refresh_token},
            )
            assert refreshed.status_code == 400
            me = await api.get("/api/v1/me", headers=bearer(record.access_token))
            assert me.status_code == 401


async def test_an_expiring_access_token_is_refreshed_once_under_concurrent_clicks(
    app: FastAPI, tenant: Tenant
) -> None:
    """Eight pages at once on a session whose access token is about to expire: one request
    rotates the refresh token, the others use the current token; no reuse is detected."""
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        session_id = _session_id(user)
        sessions = _sessions(app)
        record = await sessions.load(session_id)
        assert record is not None
        await sessions.save(
            session_id, dataclasses.replace(record, access_expires_at=time.time() + 30)
        )
        pages = await asyncio.gather(*(user.get("/console/stock") for _ in range(8)))
        assert [page.status_code for page in pages] == [200] * 8
        rotated = await sessions.load(session_id)
        assert rotated is not None
        assert rotated.refresh_token != record.refresh_token
        assert rotated.access_token != record.access_token
        assert rotated.access_expires_at > time.time() + 300
        assert (await user.get("/console/stock")).status_code == 200


async def test_an_expired_access_token_waits_for_the_refresh_in_flight(
    app: FastAPI, tenant: Tenant
) -> None:
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        session_id = _session_id(user)
        sessions = _sessions(app)
        record = await sessions.load(session_id)
        assert record is not None
        await sessions.save(
            session_id, dataclasses.replace(record, access_expires_at=time.time() - 1000)
        )
        pages = await asyncio.gather(*(user.get("/console/stock") for _ in range(4)))
        assert [page.status_code for page in pages] == [200] * 4


async def test_a_session_ends_at_its_absolute_timeout_and_idles_out(
    app: FastAPI, tenant: Tenant
) -> None:
    settings = app.state.settings
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        session_id = _session_id(user)
        sessions = _sessions(app)
        record = await sessions.load(session_id)
        assert record is not None
        # Idle timeout: the record's TTL, renewed by each request.
        key = sessions._key(session_id)
        ttl = await app.state.redis.ttl(key)
        assert 0 < ttl <= settings.console_idle_timeout_seconds
        await sessions.save(
            session_id,
            dataclasses.replace(
                record,
                signed_in_at=time.time() - settings.console_absolute_timeout_seconds - 1,
            ),
        )
        assert (await user.get("/console/stock")).status_code == 303
        assert await app.state.redis.exists(key) == 0


async def test_a_tampered_or_unknown_cookie_is_the_sign_in_page(app: FastAPI) -> None:
    async with ConsoleUser(app) as user:
        for value in ("nope", "x" * 500, ""):
            user.http.cookies.set("stockyard_console", value)
            response = await user.get("/console/users")
            assert response.status_code == 303, value
            assert response.headers["location"].startswith("/console/sign-in")


async def test_the_session_record_in_redis_holds_no_token_in_clear(
    app: FastAPI, tenant: Tenant
) -> None:
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        session_id = _session_id(user)
        record = await _sessions(app).load(session_id)
        assert isinstance(record, ConsoleSession)
        raw = await app.state.redis.get(_sessions(app)._key(session_id))
        assert raw is not None
        for secret in (record.access_token, record.refresh_token or "", record.csrf_token):
            assert secret.encode() not in raw
        # The key is a hash of the cookie, not the cookie.
        assert session_id not in _sessions(app)._key(session_id)


async def test_the_sign_in_goes_back_to_the_page_asked_for_and_never_off_site(
    app: FastAPI, tenant: Tenant
) -> None:
    async with ConsoleUser(app) as user:
        for target, landing in (
            ("/console/audit", "/console/audit"),
            ("https://evil.example/", "/console/stock"),
            ("//evil.example/console/", "/console/stock"),
            ("/console/..//evil.example", "/console/stock"),
        ):
            await user.get("/console/sign-in", next=target)
            response = await user.post(
                "/console/sign-in",
                {
                    "tenant": tenant.slug,
                    "email": tenant.owner_email,
                    "password": PASSWORD,
                    "next": target,
                },
            )
            assert response.status_code == 303
            assert response.headers["location"] == landing, target


async def test_sign_in_is_guarded_by_the_same_per_account_limiter(
    services: TestServices, tenant: Tenant
) -> None:
    path = "/console/sign-in"
    limited = make_settings(services, login_rate_limit_per_minute=2)
    async with running_app(limited) as (app, _):
        async with ConsoleUser(app) as user:
            statuses = []
            for _ in range(4):
                await user.get(path)
                response = await user.post(
                    path,
                    {"tenant": tenant.slug, "email": tenant.owner_email, "password": "wrong one"},
                )
                statuses.append(response.status_code)
            assert statuses[-1] == 429, statuses
            assert "Too many requests" in response.text
            assert response.headers.get("retry-after")
        # The API's own sign-in counts against the same guard.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            login = await password_login(api, slug=tenant.slug, email=tenant.owner_email)
            assert login.status_code == 429


async def test_a_reload_after_a_form_never_posts_it_again(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, inv: Inventory
) -> None:
    """Post/redirect/get: the result (and a secret shown once) is on the page the form
    redirects to, once; reloading that page is a GET."""
    sku = (await inv.product())["sku"]
    code = (await inv.location())["code"]
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        await user.get("/console/movements/new")
        posted = await user.post(
            "/console/movements/new",
            {"kind": "receipt", "sku": sku, "location": code, "quantity": "4"},
        )
        assert posted.status_code == 303
        shown = await user.get(posted.headers["location"])
        assert "4 on hand" in shown.text and posted.headers["x-request-id"] in shown.text
        reloaded = await user.get(posted.headers["location"])
        assert "4 on hand" not in reloaded.text
        created = await user.post(
            "/console/clients", {"name": "once", "scopes": ["inventory:read"]}
        )
        page = await user.get(created.headers["location"])
        secret = re.search(r'id="client-secret">([^<]+)<', page.text)
        assert secret is not None
        assert secret.group(1) not in (await user.get("/console/clients")).text
        # The flash of one page is never shown by another.
        await user.post(
            "/console/users", {"email": "f@example.com", "role": "viewer", "password": PASSWORD}
        )
        assert "Added f@example.com" not in (await user.get("/console/clients")).text
        assert "Added f@example.com" in (await user.get("/console/users")).text
    history = await client.get("/api/v1/movements", params={"sku": sku}, headers=tenant.headers)
    assert [m["delta"] for m in history.json()["items"]] == [4]


async def test_with_redis_away_the_console_answers_503_and_leaves_no_live_session(
    services: TestServices, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    live_before = await owner_db.fetchval(
        "SELECT count(*) FROM token_family WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id
    )
    away = make_settings(services, redis_url="redis://127.0.0.1:1/0", rate_limit_fail_open=True)
    async with running_app(away) as (app, _), ConsoleUser(app) as user:
        await user.get("/console/sign-in")
        response = await user.post(
            "/console/sign-in",
            {"tenant": tenant.slug, "email": tenant.owner_email, "password": PASSWORD},
        )
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-request-id"] in response.text
        user.http.cookies.set("stockyard_console", "some-session-id")
        assert (await user.get("/console/stock")).status_code == 503
    live_after = await owner_db.fetchval(
        "SELECT count(*) FROM token_family WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id
    )
    assert live_after == live_before


async def test_only_the_holder_of_the_refresh_lock_releases_it(app: FastAPI) -> None:
    sessions = _sessions(app)
    holder = await sessions.lock_refresh("lock-test-session")
    assert holder is not None
    assert await sessions.lock_refresh("lock-test-session") is None
    await sessions.unlock_refresh("lock-test-session", "someone-else")
    assert await sessions.lock_refresh("lock-test-session") is None
    await sessions.unlock_refresh("lock-test-session", holder)
    again = await sessions.lock_refresh("lock-test-session")
    assert again is not None
    await sessions.unlock_refresh("lock-test-session", again)
