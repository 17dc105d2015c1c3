"""Tenant B's lists never contain tenant A's rows, whatever A has created."""

from __future__ import annotations

import httpx

from tests.support.crew import add_client, add_user
from tests.support.helpers import Tenant
from tests.support.inventory import Inventory


async def test_every_list_of_another_tenant_is_free_of_our_rows(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = Inventory(client, tenant)
    product = await mine.product("ISO-SKU")
    location = await mine.location("ISO-LOC")
    await mine.receive("ISO-SKU", "ISO-LOC", 5)
    held = await mine.post(
        "/reservations", {"sku": "ISO-SKU", "location": "ISO-LOC", "quantity": 1}
    )
    user_id, _ = await add_user(client, tenant, "member")
    client_id, _, _ = await add_client(client, tenant, ["inventory:read"])
    ours = {
        product["id"],
        location["id"],
        held.json()["reservation"]["id"],
        user_id,
        client_id,
        "ISO-SKU",
        "ISO-LOC",
    }

    theirs = Inventory(client, other_tenant)
    for path in (
        "/products",
        "/locations",
        "/movements",
        "/stock",
        "/reservations",
        "/events",
        "/users",
        "/clients",
        "/audit",
    ):
        response = await theirs.get(path, limit=500)
        assert response.status_code == 200, path
        assert not ours & set(str(response.json()["items"]).split("'")), path
    for path in (
        f"/products/{product['id']}",
        f"/locations/{location['id']}",
        f"/reservations/{held.json()['reservation']['id']}",
        f"/users/{user_id}",
    ):
        assert (await theirs.get(path)).status_code == 404, path
