from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.support.helpers import Tenant
from tests.support.inventory import Inventory
from tests.support.ledger import balances_against_ledger


async def test_receipt_issue_adjustment_update_the_balance(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    first = await inv.move(sku, loc, "receipt", 10)
    assert first.status_code == 201
    body = first.json()
    assert body["movement"]["delta"] == 10 and body["movement"]["kind"] == "receipt"
    assert body["movement"]["request_id"] == first.headers["X-Request-ID"]
    assert body["balance"] == {
        "sku": sku,
        "location": loc,
        "on_hand": 10,
        "reserved": 0,
        "available": 10,
    }
    assert (await inv.move(sku, loc, "issue", 3)).json()["balance"]["on_hand"] == 7
    assert (await inv.move(sku, loc, "adjustment", -2)).json()["balance"]["on_hand"] == 5
    assert (await inv.balance(sku, loc))["on_hand"] == 5


async def test_issue_beyond_stock_is_409_and_writes_nothing(
    inv: Inventory, app_db: asyncpg.Connection
) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, 2)
    response = await inv.move(sku, loc, "issue", 3)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_stock"
    history = (await inv.get("/movements", sku=sku)).json()["items"]
    assert [m["delta"] for m in history] == [2]
    # Read by the app role in the tenant, outside the API: the balance kept its 2, as the ledger.
    rows = [
        row for row in await balances_against_ledger(app_db, inv.tenant.id) if row["sku"] == sku
    ]
    assert [(row["on_hand"], row["ledger"], row["reserved"]) for row in rows] == [(2, 2, 0)]


@pytest.mark.parametrize(
    ("kind", "quantity"), [("receipt", 0), ("receipt", -1), ("issue", 0), ("adjustment", 0)]
)
async def test_bad_quantities_are_422(inv: Inventory, kind: str, quantity: int) -> None:
    response = await inv.move("ANY", "ANY", kind, quantity)
    assert response.status_code == 422


async def test_unknown_sku_or_location_is_404(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    assert (await inv.move("NOPE", loc, "receipt", 1)).status_code == 404
    assert (await inv.move(sku, "NOPE", "receipt", 1)).status_code == 404


async def test_another_tenants_sku_is_404_and_same_sku_is_allowed(
    client: httpx.AsyncClient, inv: Inventory, other_tenant: Tenant
) -> None:
    theirs = Inventory(client, other_tenant)
    product = await theirs.product("SHARED-SKU")
    await theirs.location("SHARED-LOC")
    assert (await inv.move("SHARED-SKU", "SHARED-LOC", "receipt", 1)).status_code == 404
    assert (await inv.get(f"/products/{product['id']}")).status_code == 404
    assert (await inv.product("SHARED-SKU"))["sku"] == "SHARED-SKU"


async def test_concurrent_issues_never_oversell(inv: Inventory, app_db: asyncpg.Connection) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, 100)
    responses = await asyncio.gather(*(inv.move(sku, loc, "issue", 1) for _ in range(200)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 100
    assert statuses.count(409) == 100
    assert (await inv.balance(sku, loc))["on_hand"] == 0
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(inv.tenant.id))
        ledger_sum = await app_db.fetchval(
            "SELECT sum(m.delta) FROM movement m JOIN product p ON p.id = m.product_id "
            "WHERE p.sku = $1",
            sku,
        )
    assert ledger_sum == 0


async def test_opposite_transfers_race_without_deadlock_or_drift(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    a = (await inv.location())["code"]
    b = (await inv.location())["code"]
    await inv.receive(sku, a, 100)
    await inv.receive(sku, b, 100)

    async def transfer(source: str, target: str) -> httpx.Response:
        return await inv.post(
            "/transfers",
            {"sku": sku, "from_location": source, "to_location": target, "quantity": 1},
        )

    responses = await asyncio.gather(
        *(transfer(a, b) for _ in range(100)), *(transfer(b, a) for _ in range(100))
    )
    assert {r.status_code for r in responses} == {201}
    assert (await inv.balance(sku, a))["on_hand"] == 100
    assert (await inv.balance(sku, b))["on_hand"] == 100
    movements = (await inv.get("/movements", sku=sku, limit=500)).json()["items"]
    assert sum(m["delta"] for m in movements) == 200
    assert sum(1 for m in movements if m["transfer_id"]) == 400


async def test_transfer_moves_stock_in_one_transaction(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    a = (await inv.location())["code"]
    b = (await inv.location())["code"]
    await inv.receive(sku, a, 5)
    response = await inv.post(
        "/transfers", {"sku": sku, "from_location": a, "to_location": b, "quantity": 3}
    )
    assert response.status_code == 201
    body = response.json()
    assert [m["delta"] for m in body["movements"]] == [-3, 3]
    assert body["movements"][0]["transfer_id"] == body["transfer_id"]
    assert [x["on_hand"] for x in body["balances"]] == [2, 3]
    too_much = await inv.post(
        "/transfers", {"sku": sku, "from_location": a, "to_location": b, "quantity": 3}
    )
    assert too_much.status_code == 409
    assert (await inv.balance(sku, b))["on_hand"] == 3
    same = await inv.post(
        "/transfers", {"sku": sku, "from_location": a, "to_location": a, "quantity": 1}
    )
    assert same.status_code == 422


async def test_idempotent_post_applies_once_even_concurrently(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    body = {"sku": sku, "location": loc, "kind": "receipt", "quantity": 5}
    responses = await asyncio.gather(
        *(inv.post("/movements", body, **{"Idempotency-Key": "order-42"}) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["movement"]["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    assert (await inv.balance(sku, loc))["on_hand"] == 5
    different = await inv.post(
        "/movements", {**body, "quantity": 6}, **{"Idempotency-Key": "order-42"}
    )
    assert different.status_code == 422
    assert different.json()["error"]["code"] == "idempotency_key_reused"


async def test_failed_request_does_not_burn_its_idempotency_key(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    body = {"sku": sku, "location": loc, "kind": "issue", "quantity": 1}
    assert (await inv.post("/movements", body, **{"Idempotency-Key": "k1"})).status_code == 409
    await inv.receive(sku, loc, 1)
    assert (await inv.post("/movements", body, **{"Idempotency-Key": "k1"})).status_code == 201


async def test_app_role_cannot_rewrite_the_ledger(
    inv: Inventory, app_db: asyncpg.Connection
) -> None:
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(inv.tenant.id))
        for statement in ("UPDATE movement SET delta = 1", "DELETE FROM movement"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with app_db.transaction():
                    await app_db.execute(statement)
