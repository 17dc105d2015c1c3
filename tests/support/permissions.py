"""The permission matrix: every route x every kind of caller -> the status it must answer.
tests/security/test_permission_matrix.py checks it against the app; other tests walk its
routes."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.crew import Crew, add_client, add_user
from tests.support.helpers import PASSWORD
from tests.support.inventory import Inventory

PRINCIPALS = (
    "owner",
    "admin",
    "member",
    "viewer",
    "client_read",
    "client_rw",
    "anonymous",
    "other_tenant",
)

Prepare = Callable[[httpx.AsyncClient, Crew], Awaitable[dict[str, Any]]]


async def _nothing(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    return {}


async def _fresh_member(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    user_id, _ = await add_user(client, crew.tenant, "member")
    return {"user_id": user_id, "headers": {"If-Match": '"1"'}}


async def _fresh_client(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    client_id, _, _ = await add_client(client, crew.tenant, ["inventory:read"])
    return {"client_id": client_id}


def _new_user_body() -> dict[str, Any]:
    return {
        "email": f"u-{secrets.token_hex(4)}@example.com",
        "role": "member",
        "password": PASSWORD,
    }


def _new_tenant_body() -> dict[str, Any]:
    slug = f"m-{secrets.token_hex(5)}"
    return {
        "name": "Matrix",
        "slug": slug,
        "owner_email": f"o@{slug}.example.com",
        "owner_password": PASSWORD,
    }


async def _fresh_product(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    product = await Inventory(client, crew.tenant).product()
    return {"product_id": product["id"], "headers": {"If-Match": '"1"'}}


async def _fresh_location(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    location = await Inventory(client, crew.tenant).location()
    return {"location_id": location["id"], "headers": {"If-Match": '"1"'}}


async def _stocked(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    inv = Inventory(client, crew.tenant)
    sku = (await inv.product())["sku"]
    source, target = (await inv.location())["code"], (await inv.location())["code"]
    await inv.receive(sku, source, 10)
    return {"sku": sku, "source": source, "target": target}


async def _reserved(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    stocked = await _stocked(client, crew)
    held = await Inventory(client, crew.tenant).post(
        "/reservations", {"sku": stocked["sku"], "location": stocked["source"], "quantity": 1}
    )
    return {"reservation_id": held.json()["reservation"]["id"]}


async def _fresh_webhook(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/matrix", "events": ["stock.*"]},
        headers=crew.tenant.headers,
    )
    assert response.status_code == 201, response.text
    return {"webhook_id": response.json()["id"], "headers": {"If-Match": '"1"'}}


async def _request_id(client: httpx.AsyncClient, crew: Crew) -> dict[str, Any]:
    return {"request_id": "req-matrix-1"}


def _movement_body(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"sku": ctx["sku"], "location": ctx["source"], "kind": "issue", "quantity": 1}


@dataclass
class Row:
    expect: dict[str, int]
    prepare: Prepare = _nothing
    json: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    form: dict[str, str] | None = None
    params: dict[str, str] = field(default_factory=dict)


def _statuses(ok: int, *, allowed: set[str], other_tenant: int | None = None) -> dict[str, int]:
    """`ok` for the principals allowed, 403 for other authenticated ones, 401 for anonymous;
    another tenant's token gets `other_tenant` (404 for item routes, `ok` for collections)."""
    result = {p: ok if p in allowed else 403 for p in PRINCIPALS}
    result["anonymous"] = 401
    result["other_tenant"] = other_tenant if other_tenant is not None else ok
    return result


USER_ADMINS = {"owner", "admin"}
READERS = {"owner", "admin", "member", "viewer", "client_read", "client_rw"}
WRITERS = {"owner", "admin", "member", "client_rw"}
EVERY_USER = {"owner", "admin", "member", "viewer"}
EVERYONE = set(PRINCIPALS)
PUBLIC = dict.fromkeys(PRINCIPALS, 200)

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row(PUBLIC),
    ("GET", "/livez"): Row(PUBLIC),
    ("GET", "/api/v1/tenant/export"): Row(_statuses(200, allowed={"owner"})),
    ("GET", "/.well-known/jwks.json"): Row(PUBLIC),
    ("GET", "/.well-known/oauth-authorization-server"): Row(PUBLIC),
    ("POST", "/api/v1/tenants"): Row(
        dict.fromkeys(PRINCIPALS, 201), json=lambda _: _new_tenant_body()
    ),
    ("POST", "/api/v1/auth/token"): Row(
        dict.fromkeys(PRINCIPALS, 400), form={"grant_type": "refresh_token", "refresh_token": "x"}
    ),
    ("POST", "/api/v1/auth/revoke"): Row(PUBLIC, form={"token": "unknown"}),
    ("GET", "/api/v1/me"): Row(_statuses(200, allowed=EVERYONE)),
    ("POST", "/api/v1/me/password"): Row(
        _statuses(204, allowed=EVERY_USER),
        json=lambda _: {"current_password": PASSWORD, "new_password": PASSWORD},
    ),
    ("GET", "/api/v1/users"): Row(_statuses(200, allowed=USER_ADMINS)),
    ("POST", "/api/v1/users"): Row(
        _statuses(201, allowed=USER_ADMINS), json=lambda _: _new_user_body()
    ),
    ("GET", "/api/v1/users/{user_id}"): Row(
        _statuses(200, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_member
    ),
    ("PATCH", "/api/v1/users/{user_id}"): Row(
        _statuses(200, allowed=USER_ADMINS, other_tenant=404),
        prepare=_fresh_member,
        json=lambda _: {"name": "Renamed"},
    ),
    ("DELETE", "/api/v1/users/{user_id}"): Row(
        _statuses(204, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_member
    ),
    ("GET", "/api/v1/clients"): Row(_statuses(200, allowed=USER_ADMINS)),
    ("POST", "/api/v1/clients"): Row(
        _statuses(201, allowed=USER_ADMINS),
        json=lambda _: {"name": "matrix", "scopes": ["inventory:read"]},
    ),
    ("DELETE", "/api/v1/clients/{client_id}"): Row(
        _statuses(204, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_client
    ),
    ("GET", "/api/v1/products"): Row(_statuses(200, allowed=READERS)),
    ("POST", "/api/v1/products"): Row(
        _statuses(201, allowed=WRITERS),
        json=lambda _: {"sku": f"M-{secrets.token_hex(4)}", "name": "Matrix"},
    ),
    ("GET", "/api/v1/products/{product_id}"): Row(
        _statuses(200, allowed=READERS, other_tenant=404), prepare=_fresh_product
    ),
    ("PATCH", "/api/v1/products/{product_id}"): Row(
        _statuses(200, allowed=WRITERS, other_tenant=404),
        prepare=_fresh_product,
        json=lambda _: {"name": "Renamed"},
    ),
    ("DELETE", "/api/v1/products/{product_id}"): Row(
        _statuses(204, allowed=WRITERS, other_tenant=404), prepare=_fresh_product
    ),
    ("GET", "/api/v1/locations"): Row(_statuses(200, allowed=READERS)),
    ("POST", "/api/v1/locations"): Row(
        _statuses(201, allowed=WRITERS),
        json=lambda _: {"code": f"M-{secrets.token_hex(4)}", "name": "Matrix"},
    ),
    ("GET", "/api/v1/locations/{location_id}"): Row(
        _statuses(200, allowed=READERS, other_tenant=404), prepare=_fresh_location
    ),
    ("PATCH", "/api/v1/locations/{location_id}"): Row(
        _statuses(200, allowed=WRITERS, other_tenant=404),
        prepare=_fresh_location,
        json=lambda _: {"name": "Renamed"},
    ),
    ("DELETE", "/api/v1/locations/{location_id}"): Row(
        _statuses(204, allowed=WRITERS, other_tenant=404), prepare=_fresh_location
    ),
    ("POST", "/api/v1/movements"): Row(
        _statuses(201, allowed=WRITERS, other_tenant=404), prepare=_stocked, json=_movement_body
    ),
    # Another tenant's batch names SKUs it does not have: 422 with the items' indexes.
    ("POST", "/api/v1/movements/bulk"): Row(
        _statuses(201, allowed=WRITERS, other_tenant=422),
        prepare=_stocked,
        json=lambda ctx: {"items": [_movement_body(ctx)]},
    ),
    ("GET", "/api/v1/movements"): Row(_statuses(200, allowed=READERS)),
    ("POST", "/api/v1/transfers"): Row(
        _statuses(201, allowed=WRITERS, other_tenant=404),
        prepare=_stocked,
        json=lambda ctx: {
            "sku": ctx["sku"],
            "from_location": ctx["source"],
            "to_location": ctx["target"],
            "quantity": 1,
        },
    ),
    ("GET", "/api/v1/stock"): Row(_statuses(200, allowed=READERS)),
    ("GET", "/api/v1/events"): Row(_statuses(200, allowed=READERS)),
    ("POST", "/api/v1/reservations"): Row(
        _statuses(201, allowed=WRITERS, other_tenant=404),
        prepare=_stocked,
        json=lambda ctx: {"sku": ctx["sku"], "location": ctx["source"], "quantity": 1},
    ),
    ("GET", "/api/v1/reservations"): Row(_statuses(200, allowed=READERS)),
    ("GET", "/api/v1/reservations/{reservation_id}"): Row(
        _statuses(200, allowed=READERS, other_tenant=404), prepare=_reserved
    ),
    ("POST", "/api/v1/reservations/{reservation_id}/commit"): Row(
        _statuses(200, allowed=WRITERS, other_tenant=404), prepare=_reserved
    ),
    ("POST", "/api/v1/reservations/{reservation_id}/release"): Row(
        _statuses(200, allowed=WRITERS, other_tenant=404), prepare=_reserved
    ),
    ("GET", "/api/v1/audit"): Row(_statuses(200, allowed=USER_ADMINS)),
    ("GET", "/api/v1/webhooks"): Row(_statuses(200, allowed=USER_ADMINS)),
    ("POST", "/api/v1/webhooks"): Row(
        _statuses(201, allowed=USER_ADMINS),
        json=lambda _: {"url": "https://hooks.example.com/matrix", "events": ["*"]},
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}"): Row(
        _statuses(200, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_webhook
    ),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): Row(
        _statuses(200, allowed=USER_ADMINS, other_tenant=404),
        prepare=_fresh_webhook,
        json=lambda _: {"description": "renamed"},
    ),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Row(
        _statuses(204, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_webhook
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret"): Row(
        _statuses(200, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_webhook
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): Row(
        _statuses(200, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_webhook
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/test"): Row(
        _statuses(202, allowed=USER_ADMINS, other_tenant=404), prepare=_fresh_webhook
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/replay"): Row(
        _statuses(202, allowed=USER_ADMINS, other_tenant=404),
        prepare=_fresh_webhook,
        json=lambda _: {"after": "2020-01-01T00:00:00Z"},
    ),
    # Support routes are for platform staff only: every tenant token is refused.
    ("GET", "/api/v1/support/requests/{request_id}"): Row(
        _statuses(200, allowed=set(), other_tenant=403), prepare=_request_id
    ),
}
