"""Hostile input on the console's routes: forged cursors and ids, huge and odd form bodies,
NUL characters. Each answer is a clear page with the request id, and nothing is written."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from stockyard.console.errors import internal_error_page
from stockyard.console.sessions import ConsoleSessions
from tests.support.console import SAME_ORIGIN, ConsoleUser
from tests.support.helpers import PASSWORD, Tenant
from tests.support.inventory import Inventory


@pytest.fixture
async def owner(app: FastAPI, tenant: Tenant) -> ConsoleUser:
    user = ConsoleUser(app)
    await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
    return user


def _is_clear_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-request-id"] in response.text
    lowered = response.text.lower()
    for leak in ("traceback", "sqlalchemy", "asyncpg", "from product", 'file "', "sqlstate"):
        assert leak not in lowered, leak


@pytest.mark.parametrize(
    "path", ["/console/stock", "/console/users", "/console/audit", "/console/movements"]
)
async def test_a_forged_cursor_is_a_clear_422(owner: ConsoleUser, path: str) -> None:
    for cursor in ("garbage", "eyJ4IjoxfQ", "WyJhIiwiYiIsImMiXQ", "%00" * 10):
        _is_clear_page(await owner.get(path, cursor=cursor), 422)


async def test_forged_ids_and_values_in_the_address_are_clear_pages(owner: ConsoleUser) -> None:
    _is_clear_page(await owner.get("/console/products/not-a-uuid"), 422)
    _is_clear_page(await owner.get("/console/products/00000000-0000-0000-0000-000000000000"), 404)
    _is_clear_page(await owner.get("/console/stock", q="x" * 101), 422)
    _is_clear_page(await owner.get("/console/movements", kind="theft"), 422)
    _is_clear_page(await owner.get("/console/movements", start="yesterday"), 422)
    _is_clear_page(await owner.get("/console/audit", actor_id="someone"), 422)
    _is_clear_page(await owner.get("/console/no-such-page"), 404)
    _is_clear_page(await owner.post("/console/users/not-a-uuid/deactivate"), 422)


async def test_odd_and_huge_form_bodies_are_refused_and_write_nothing(
    owner: ConsoleUser, client: httpx.AsyncClient, tenant: Tenant, inv: Inventory
) -> None:
    sku = (await inv.product())["sku"]
    code = (await inv.location())["code"]
    base = {"csrf_token": owner.csrf, "kind": "receipt", "sku": sku, "location": code}
    huge = {**base, "quantity": "1", "reason": "x" * (2 * 1024 * 1024)}
    _is_clear_page(
        await owner.http.post("/console/movements/new", data=huge, headers=SAME_ORIGIN), 413
    )
    many = {**base, "quantity": "1", **{f"f{i}": "x" for i in range(100)}}
    _is_clear_page(
        await owner.http.post("/console/movements/new", data=many, headers=SAME_ORIGIN), 400
    )
    with_file = await owner.http.post(
        "/console/movements/new",
        data={**base, "quantity": "1"},
        files={"upload": ("a.txt", b"hello")},
        headers=SAME_ORIGIN,
    )
    _is_clear_page(with_file, 400)
    for quantity in ("1e9", "ten", "", "99999999999999999999", "-5"):
        _is_clear_page(
            await owner.post("/console/movements/new", {**base, "quantity": quantity}), 422
        )
    nul = await owner.post("/console/movements/new", {**base, "quantity": "1", "reason": "a\x00b"})
    _is_clear_page(nul, 422)
    unknown = await owner.post(
        "/console/movements/new", {**base, "sku": "NOPE-" + sku, "quantity": "1"}
    )
    _is_clear_page(unknown, 404)
    history = await client.get("/api/v1/movements", params={"sku": sku}, headers=tenant.headers)
    assert history.json()["items"] == []


async def test_a_refused_user_form_keeps_what_was_typed_but_never_the_password(
    owner: ConsoleUser,
) -> None:
    await owner.get("/console/users")
    response = await owner.post(
        "/console/users",
        {"email": "not-an-email", "name": "Ann", "role": "member", "password": PASSWORD},
    )
    _is_clear_page(response, 422)
    assert 'value="not-an-email"' in response.text and 'value="Ann"' in response.text
    assert PASSWORD not in response.text


async def test_an_admin_cannot_make_an_owner_nor_remove_the_last_one(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, owner: ConsoleUser
) -> None:
    me = (await client.get("/api/v1/me", headers=tenant.headers)).json()["user"]
    await owner.get("/console/users")
    last_owner = await owner.post(f"/console/users/{me['id']}/deactivate")
    _is_clear_page(last_owner, 409)
    assert "at least one active owner" in last_owner.text
    demoted = await owner.post(f"/console/users/{me['id']}/role", {"role": "admin", "version": "1"})
    _is_clear_page(demoted, 409)
    created = await client.post(
        "/api/v1/users",
        json={"email": f"admin@{tenant.slug}.example.com", "role": "admin", "password": PASSWORD},
        headers=tenant.headers,
    )
    async with ConsoleUser(app) as admin:
        await admin.signed_in(tenant=tenant.slug, email=created.json()["email"])
        await admin.get("/console/users")
        escalated = await admin.post(
            "/console/users",
            {"email": "boss@example.com", "role": "owner", "password": PASSWORD},
        )
        _is_clear_page(escalated, 403)
        assert "may not grant" in escalated.text
    users = await client.get("/api/v1/users", headers=tenant.headers)
    assert "boss@example.com" not in users.text


async def test_console_sign_in_and_pages_log_no_secrets(
    app: FastAPI, tenant: Tenant, log_lines: list[str]
) -> None:
    async with ConsoleUser(app) as user:
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        await user.get("/console/users")
        await user.post(
            "/console/users", {"email": "x@example.com", "role": "member", "password": PASSWORD}
        )
        await user.post("/console/clients", {"name": "logged", "scopes": ["inventory:read"]})
        session_id = user.http.cookies["stockyard_console"]
        sessions: ConsoleSessions = app.state.console_sessions
        record = await sessions.load(session_id)
        assert record is not None
        await user.post("/console/sign-out")
    text = "\n".join(log_lines)
    assert "/console/sign-in" in text, "the requests above must have been logged"
    for secret in (
        PASSWORD,
        session_id,
        record.csrf_token,
        record.access_token,
        record.refresh_token or "",
    ):
        assert secret not in text
    assert "stockyard_console=" not in text and "$argon2" not in text


def test_an_unhandled_failure_is_a_page_with_the_request_id_and_no_detail() -> None:
    response = internal_error_page('abc"<script>')
    body = bytes(response.body).decode()
    assert response.status_code == 500
    assert "abc&#34;&lt;script&gt;" in body or "abc&quot;&lt;script&gt;" in body
    assert "<script>" not in body
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_non_ascii_form_token_is_refused_not_a_500(app: FastAPI, tenant: Tenant) -> None:
    async with ConsoleUser(app) as user:
        await user.get("/console/sign-in")
        sign_in = await user.post(
            "/console/sign-in",
            {"tenant": tenant.slug, "email": tenant.owner_email, "password": PASSWORD},
            csrf="é" * 10,
        )
        _is_clear_page(sign_in, 403)
        await user.signed_in(tenant=tenant.slug, email=tenant.owner_email)
        _is_clear_page(await user.post("/console/users", {"email": "a@b.c"}, csrf="\ufffd"), 403)


async def test_an_out_of_range_date_filter_is_a_422_not_an_outage(owner: ConsoleUser) -> None:
    for start in ("0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00"):
        _is_clear_page(await owner.get("/console/movements", start=start), 422)
        _is_clear_page(await owner.get("/console/audit", since=start), 422)


async def test_a_refusal_drawn_on_the_form_is_audited_like_the_apis(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await client.post(
        "/api/v1/users",
        json={"email": f"adm@{tenant.slug}.example.com", "role": "admin", "password": PASSWORD},
        headers=tenant.headers,
    )
    async with ConsoleUser(app) as admin:
        await admin.signed_in(tenant=tenant.slug, email=created.json()["email"])
        await admin.get("/console/users")
        refused = await admin.post(
            "/console/users", {"email": "boss2@example.com", "role": "owner", "password": PASSWORD}
        )
        _is_clear_page(refused, 403)
    audit = await client.get(
        "/api/v1/audit",
        params={"request_id": refused.headers["x-request-id"]},
        headers=tenant.headers,
    )
    events = audit.json()["items"]
    assert [(e["action"], e["status"], e["actor_id"]) for e in events] == [
        ("request.denied", 403, created.json()["id"])
    ]
