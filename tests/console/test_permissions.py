"""The console's permission matrix and isolation probes: every console route x every kind of
signed-in person -> the status it must answer. A console route without a row fails the test,
as an API route without one fails tests/security/test_permission_matrix.py.

Anonymous callers are sent to the sign-in page (303); another tenant's owner gets what an owner
gets on lists (their own rows) and 404 on this tenant's ids.
"""

from __future__ import annotations

import importlib
import pkgutil
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from stockyard import console
from stockyard.core.settings import Settings
from tests.support.cli import run_cli
from tests.support.console import ConsoleUser
from tests.support.crew import add_client, add_user
from tests.support.helpers import PASSWORD, Tenant, signup
from tests.support.inventory import Inventory

PEOPLE = ("owner", "admin", "member", "viewer", "other_tenant", "staff", "anonymous")
ADMINS = {"owner", "admin", "other_tenant"}
READERS = {"owner", "admin", "member", "viewer", "other_tenant"}
WRITERS = {"owner", "admin", "member", "other_tenant"}

Prepare = Callable[[httpx.AsyncClient, Tenant], Awaitable[dict[str, str]]]


async def _nothing(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    return {}


async def _member(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    user_id, _ = await add_user(client, tenant, "member")
    return {"user_id": user_id}


async def _client(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    client_id, _, _ = await add_client(client, tenant, ["inventory:read"])
    return {"client_id": client_id}


async def _webhook(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    created = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/console", "events": ["stock.*"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    return {"webhook_id": created.json()["id"]}


async def _product(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    return {"product_id": (await Inventory(client, tenant).product())["id"]}


async def _stocked(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    inv = Inventory(client, tenant)
    sku, code = (await inv.product())["sku"], (await inv.location())["code"]
    return {"sku": sku, "location": code}


def _new_user(_: dict[str, str]) -> dict[str, str]:
    return {
        "email": f"m-{secrets.token_hex(4)}@example.com",
        "role": "member",
        "password": PASSWORD,
    }


def _receipt(ctx: dict[str, str]) -> dict[str, str]:
    return {"kind": "receipt", "sku": ctx["sku"], "location": ctx["location"], "quantity": "2"}


@dataclass
class Row:
    expect: dict[str, int]
    prepare: Prepare = _nothing
    form: Callable[[dict[str, str]], dict[str, Any]] | None = None
    params: dict[str, str] = field(default_factory=dict)


def _statuses(ok: int, allowed: set[str], *, item: bool = False) -> dict[str, int]:
    result = {who: ok if who in allowed else 403 for who in PEOPLE}
    result["anonymous"] = 303
    if item and "other_tenant" in allowed:
        result["other_tenant"] = 404
    return result


EVERYONE = dict.fromkeys(PEOPLE, 200)
STAFF_ONLY = {**dict.fromkeys(PEOPLE, 403), "staff": 200, "anonymous": 303}

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/console/"): Row(dict.fromkeys(PEOPLE, 303)),
    ("GET", "/console/sign-in"): Row(EVERYONE),
    # A sign-in post without the sign-in form's own token is refused, whoever sends it.
    ("POST", "/console/sign-in"): Row(dict.fromkeys(PEOPLE, 403)),
    ("GET", "/console/static/{name}"): Row(EVERYONE),
    ("GET", "/console/users"): Row(_statuses(200, ADMINS)),
    # A form that succeeds redirects to its page (post/redirect/get).
    ("POST", "/console/users"): Row(_statuses(303, ADMINS), form=_new_user),
    ("POST", "/console/users/{user_id}/role"): Row(
        _statuses(303, ADMINS, item=True),
        prepare=_member,
        form=lambda _: {"role": "viewer", "version": "1"},
    ),
    ("POST", "/console/users/{user_id}/deactivate"): Row(
        _statuses(303, ADMINS, item=True), prepare=_member
    ),
    ("GET", "/console/clients"): Row(_statuses(200, ADMINS)),
    ("POST", "/console/clients"): Row(
        _statuses(303, ADMINS), form=lambda _: {"name": "app", "scopes": ["inventory:read"]}
    ),
    ("POST", "/console/clients/{client_id}/delete"): Row(
        _statuses(303, ADMINS, item=True), prepare=_client
    ),
    ("GET", "/console/webhooks"): Row(_statuses(200, ADMINS)),
    ("POST", "/console/webhooks"): Row(
        _statuses(303, ADMINS),
        form=lambda _: {"url": "https://hooks.example.com/new", "events": "stock.*"},
    ),
    ("POST", "/console/webhooks/{webhook_id}/delete"): Row(
        _statuses(303, ADMINS, item=True), prepare=_webhook
    ),
    ("GET", "/console/audit"): Row(_statuses(200, ADMINS)),
    ("GET", "/console/tenant"): Row(_statuses(200, ADMINS)),
    ("GET", "/console/stock"): Row(_statuses(200, READERS)),
    ("GET", "/console/products/{product_id}"): Row(
        _statuses(200, READERS, item=True), prepare=_product
    ),
    ("GET", "/console/movements"): Row(_statuses(200, READERS)),
    ("GET", "/console/movements/new"): Row(_statuses(200, WRITERS)),
    ("POST", "/console/movements/new"): Row(
        # Another tenant's writer names SKUs it does not have: 404 on the form, nothing moved.
        {**_statuses(303, WRITERS), "other_tenant": 404},
        prepare=_stocked,
        form=_receipt,
    ),
    ("GET", "/console/support"): Row(STAFF_ONLY, params={"request_id": "req-console-1"}),
    # Last: it ends each person's session.
    ("POST", "/console/sign-out"): Row(dict.fromkeys(PEOPLE, 303)),
}


def console_routes() -> set[tuple[str, str]]:
    """Every route of every page module of the console package (each has its `router`)."""
    found = set()
    for module_info in pkgutil.iter_modules(console.__path__):
        module = importlib.import_module(f"stockyard.console.{module_info.name}")
        router = getattr(module, "router", None)
        if not isinstance(router, APIRouter):
            continue
        for route in router.routes:
            if isinstance(route, APIRoute):
                found |= {(method, route.path) for method in route.methods if method != "HEAD"}
    return found


def test_every_console_route_has_a_row() -> None:
    missing = console_routes() - set(MATRIX)
    stale = set(MATRIX) - console_routes()
    assert not missing, f"console routes without a permission row: {sorted(missing)}"
    assert not stale, f"rows for console routes that no longer exist: {sorted(stale)}"


def test_no_console_route_is_in_the_api_document(app: FastAPI) -> None:
    assert not [path for path in app.openapi()["paths"] if path.startswith("/console")]


@dataclass
class ConsoleCrew:
    tenant: Tenant
    people: dict[str, ConsoleUser]


@pytest.fixture
async def console_crew(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> AsyncIterator[ConsoleCrew]:
    tenant = await signup(client)
    other = await signup(client)
    people = {who: ConsoleUser(app) for who in PEOPLE}
    await people["owner"].signed_in(tenant=tenant.slug, email=tenant.owner_email)
    await people["other_tenant"].signed_in(tenant=other.slug, email=other.owner_email)
    for role in ("admin", "member", "viewer"):
        user_id, _ = await add_user(client, tenant, role)
        user = await client.get(f"/api/v1/users/{user_id}", headers=tenant.headers)
        await people[role].signed_in(tenant=tenant.slug, email=user.json()["email"])
    staff_email = f"support-{secrets.token_hex(4)}@stockyard.example.com"
    code, output = await run_cli(
        settings,
        "staff",
        "create",
        "--email",
        staff_email,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output
    await people["staff"].signed_in(tenant=None, email=staff_email)
    try:
        yield ConsoleCrew(tenant, people)
    finally:
        for person in people.values():
            await person.http.aclose()


async def test_console_permission_matrix(
    client: httpx.AsyncClient, console_crew: ConsoleCrew
) -> None:
    failures = []
    for (method, template), row in MATRIX.items():
        for who in PEOPLE:
            person = console_crew.people[who]
            prepared = await row.prepare(client, console_crew.tenant)
            path = template.format(name="console.css", **prepared)
            if method == "GET":
                response = await person.http.get(path, params=row.params)
            else:
                response = await person.post(path, row.form(prepared) if row.form else {})
            expected = row.expect[who]
            if response.status_code != expected:
                failures.append(
                    f"{method} {template} as {who}: {response.status_code} != {expected}"
                )
            if response.status_code >= 400:
                # Every refusal is a page that names its request id.
                assert response.headers["x-request-id"] in response.text, (method, template)
                assert response.headers["content-type"].startswith("text/html")
    assert not failures, "\n".join(failures)


async def test_another_tenant_sees_none_of_this_tenants_rows(
    client: httpx.AsyncClient, console_crew: ConsoleCrew
) -> None:
    tenant = console_crew.tenant
    inv = Inventory(client, tenant)
    product = await inv.product()
    location = await inv.location()
    await inv.receive(product["sku"], location["code"], 9)
    owner, other = console_crew.people["owner"], console_crew.people["other_tenant"]
    assert product["sku"] in (await owner.get("/console/stock")).text
    pages = {
        "stock": await other.get("/console/stock", q=product["sku"]),
        "movements": await other.get("/console/movements", sku=product["sku"]),
        "users": await other.get("/console/users"),
        "audit": await other.get("/console/audit"),
        "movement form": await other.get("/console/movements/new"),
    }
    # The searches echo what was asked; no row of this tenant answers them.
    assert "No stock matches." in pages["stock"].text
    assert "No movements." in pages["movements"].text
    for name, page in pages.items():
        assert page.status_code == 200, name
        assert f"<td>{product['sku']}</td>" not in page.text, name
        assert f'data-sku="{product["sku"]}"' not in page.text, name
        assert location["code"] not in page.text, name
        assert tenant.owner_email not in page.text, name
        assert str(tenant.id) not in page.text, name
    chart = await other.get(f"/console/products/{product['id']}")
    assert chart.status_code == 404
