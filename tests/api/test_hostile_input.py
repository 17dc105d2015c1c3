"""Hostile and malformed input answers a clear 4xx in the envelope, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.support.helpers import Tenant
from tests.support.inventory import Inventory


def _cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


LIST_ROUTES = [
    "/api/v1/users",
    "/api/v1/clients",
    "/api/v1/products",
    "/api/v1/locations",
    "/api/v1/movements",
    "/api/v1/stock",
    "/api/v1/reservations",
    "/api/v1/audit",
]
FORGED_CURSORS = [
    "WyJ4Il0",  # ["x"]: well formed, wrong shape for most pages
    _cursor(["x", "y"]),
    _cursor(["2024-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"]),  # naive time
    _cursor(["not-a-time", "not-a-uuid"]),
    _cursor([1, 2]),
    _cursor({"a": 1}),
    _cursor(["a\u0000b"]),
    _cursor([]),
    "%%%not-base64%%%",
    "e30",  # {}
]


@pytest.mark.parametrize("route", LIST_ROUTES)
async def test_a_forged_cursor_is_422_invalid_cursor(
    client: httpx.AsyncClient, tenant: Tenant, route: str
) -> None:
    for cursor in FORGED_CURSORS:
        response = await client.get(route, params={"cursor": cursor}, headers=tenant.headers)
        if response.status_code == 200:
            # The one shape this page issues may decode: then it must still be a usable page.
            assert "items" in response.json()
            continue
        assert response.status_code == 422, (route, cursor, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_cursor", (route, cursor, error)
        assert error["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_an_instant_outside_utc_years_is_422_on_single_and_bulk(
    client: httpx.AsyncClient, tenant: Tenant, occurred_at: str
) -> None:
    inv = Inventory(client, tenant)
    sku = (await inv.product())["sku"]
    code = (await inv.location())["code"]
    item = {
        "sku": sku,
        "location": code,
        "kind": "receipt",
        "quantity": 1,
        "occurred_at": occurred_at,
    }
    single = await inv.post("/movements", item)
    bulk = await inv.post("/movements/bulk", {"items": [item]})
    for response in (single, bulk):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
    history = await inv.get("/movements", start=occurred_at)
    assert history.status_code == 422, history.text
    assert (await inv.balance(sku, code))["on_hand"] == 0


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"])
async def test_the_instants_the_driver_writes_as_infinities_are_not_stored_but_bound(
    client: httpx.AsyncClient, tenant: Tenant, occurred_at: str
) -> None:
    """asyncpg writes these two as -infinity and infinity and reads them back naive: a
    movement at one is refused (422), while as a filter's bound either is the earliest or
    latest of all, and answers."""
    inv = Inventory(client, tenant)
    sku = (await inv.product())["sku"]
    code = (await inv.location())["code"]
    item = {"sku": sku, "location": code, "kind": "receipt", "quantity": 1}
    for response in (
        await inv.post("/movements", {**item, "occurred_at": occurred_at}),
        await inv.post("/movements/bulk", {"items": [{**item, "occurred_at": occurred_at}]}),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
    assert (await inv.balance(sku, code))["on_hand"] == 0
    await inv.receive(sku, code, 3)
    bound = "start" if occurred_at.startswith("0001") else "end"
    history = await inv.get("/movements", **{bound: occurred_at})
    assert history.status_code == 200, history.text
    assert [m["delta"] for m in history.json()["items"]] == [3]
    audit = await inv.get("/audit", **{"since" if bound == "start" else "until": occurred_at})
    assert audit.status_code == 200, audit.text


async def _assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["request_id"] == response.headers["X-Request-ID"]


async def test_a_body_over_the_limit_is_413_before_authentication(
    client: httpx.AsyncClient,
) -> None:
    """Unauthenticated and oversized: refused from Content-Length, in the envelope."""
    body = b'{"sku": "' + b"x" * (2 * 1024 * 1024) + b'", "name": "n"}'
    await _assert_413(
        await client.post(
            "/api/v1/products", content=body, headers={"Content-Type": "application/json"}
        )
    )


async def test_a_streamed_body_over_the_limit_is_413_while_it_streams(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """No Content-Length (chunked): the limit is enforced as the bytes arrive."""
    sent = 0

    async def chunks() -> Any:
        nonlocal sent
        yield b'{"sku": "'
        for _ in range(64):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'", "name": "n"}'

    response = await client.post(
        "/api/v1/products",
        content=chunks(),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    await _assert_413(response)
    listed = await client.get("/api/v1/products", headers=tenant.headers)
    assert listed.json()["items"] == []


async def test_bulk_takes_ten_thousand_items_but_not_an_unbounded_body(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    inv = Inventory(client, tenant)
    sku = (await inv.product())["sku"]
    code = (await inv.location())["code"]
    item = {"sku": sku, "location": code, "kind": "receipt", "quantity": 1, "reason": "r" * 100}
    full = await inv.post("/movements/bulk", {"items": [item] * 10_000})
    assert full.status_code == 201, full.text
    huge = {**item, "reason": "r" * 2000, "reference": "f" * 2000}
    await _assert_413(await inv.post("/movements/bulk", {"items": [huge] * 10_000}))
    assert (await inv.balance(sku, code))["on_hand"] == 10_000


async def test_the_token_endpoint_refuses_multipart_files(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "a@b.c", "password": "x"},
        files={"upload": ("big.bin", b"\0" * 32 * 1024, "application/octet-stream")},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["request_id"] == response.headers["X-Request-ID"]  # RFC 6749 shape
    oversized = await client.post(
        "/api/v1/auth/token",
        files={"upload": ("big.bin", b"\0" * 1024 * 1024, "application/octet-stream")},
    )
    await _assert_413(oversized)


async def test_a_bodiless_route_refuses_a_declared_oversized_body_before_it_runs(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """DELETE never reads its body: the declared size is refused before the route runs, so
    nothing is archived behind a 413."""
    product = await Inventory(client, tenant).product()
    response = await client.request(
        "DELETE",
        f"/api/v1/products/{product['id']}",
        content=b"x" * (2 * 1024 * 1024),
        headers={**tenant.headers, "Content-Type": "application/octet-stream"},
    )
    await _assert_413(response)
    after = await client.get(f"/api/v1/products/{product['id']}", headers=tenant.headers)
    assert after.json()["archived_at"] is None
