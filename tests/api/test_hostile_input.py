"""Hostile and malformed input answers a clear 4xx in the envelope, never a 500."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.helpers import Tenant
from tests.inventory.helpers import Inventory


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
