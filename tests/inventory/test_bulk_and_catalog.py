from __future__ import annotations

import uuid

import httpx

from stockyard.inventory.ledger.bulk_repository import StagedMovement
from stockyard.inventory.ledger.service import takes_stock
from tests.support.inventory import Inventory


def _item(sku: str, loc: str, kind: str, quantity: int) -> dict[str, object]:
    return {"sku": sku, "location": loc, "kind": kind, "quantity": quantity}


async def test_bulk_ingest_applies_everything(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    a = (await inv.location())["code"]
    b = (await inv.location())["code"]
    items = [_item(sku, a, "receipt", 1) for _ in range(500)] + [
        _item(sku, b, "receipt", 10),
        _item(sku, b, "issue", 4),
        _item(sku, a, "adjustment", -100),
    ]
    response = await inv.post("/movements/bulk", {"items": items})
    assert response.status_code == 201, response.text
    assert response.json() == {"inserted": 503}
    assert (await inv.balance(sku, a))["on_hand"] == 400
    assert (await inv.balance(sku, b))["on_hand"] == 6
    history = (await inv.get("/movements", sku=sku, location=b)).json()["items"]
    assert [m["delta"] for m in history] == [10, -4]
    assert history[0]["request_id"] == response.headers["X-Request-ID"]


async def test_bulk_names_unknown_items_and_writes_nothing(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    items = [
        _item(sku, loc, "receipt", 5),
        _item("NOPE", loc, "receipt", 1),
        _item(sku, "NOWHERE", "receipt", 1),
    ]
    response = await inv.post("/movements/bulk", {"items": items})
    assert response.status_code == 422
    details = response.json()["error"]["details"]["items"]
    assert details == [
        {"index": 1, "reason": "unknown sku"},
        {"index": 2, "reason": "unknown location"},
    ]
    assert (await inv.balance(sku, loc))["on_hand"] == 0


async def test_bulk_rejects_a_batch_that_would_oversell(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    other = (await inv.location())["code"]
    await inv.receive(sku, loc, 3)
    items = [
        _item(sku, other, "receipt", 9),
        _item(sku, loc, "issue", 2),
        _item(sku, loc, "issue", 2),
    ]
    response = await inv.post("/movements/bulk", {"items": items})
    assert response.status_code == 409
    assert [i["index"] for i in response.json()["error"]["details"]["items"]] == [1, 2]
    assert (await inv.balance(sku, loc))["on_hand"] == 3
    assert (await inv.balance(sku, other))["on_hand"] == 0


async def test_bulk_invalid_shape_names_the_item(inv: Inventory) -> None:
    response = await inv.post(
        "/movements/bulk", {"items": [_item("A", "B", "receipt", 1), _item("A", "B", "issue", 0)]}
    )
    assert response.status_code == 422
    assert any(d["loc"][:3] == ["body", "items", 1] for d in response.json()["error"]["details"])
    too_many = await inv.post(
        "/movements/bulk", {"items": [_item("A", "B", "receipt", 1)] * 10_001}
    )
    assert too_many.status_code == 422


async def test_history_pages_in_occurred_at_order(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    times = ["2026-01-03T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
    for index, moment in enumerate(times):
        body = {**_item(sku, loc, "receipt", index + 1), "occurred_at": moment}
        assert (await inv.post("/movements", body)).status_code == 201
    first = (await inv.get("/movements", sku=sku, limit=2)).json()
    assert [m["delta"] for m in first["items"]] == [2, 3]
    second = (await inv.get("/movements", sku=sku, limit=2, cursor=first["next_cursor"])).json()
    assert [m["delta"] for m in second["items"]] == [1]
    assert second["next_cursor"] is None
    window = await inv.get(
        "/movements", sku=sku, start="2026-01-02T00:00:00Z", end="2026-01-03T00:00:00Z"
    )
    assert [m["delta"] for m in window.json()["items"]] == [3]
    receipts = await inv.get("/movements", sku=sku, kind="issue")
    assert receipts.json()["items"] == []


async def test_product_crud_with_if_match_and_archive(inv: Inventory) -> None:
    product = await inv.product(reorder_point=5)
    path = f"/products/{product['id']}"
    fetched = await inv.get(path)
    assert fetched.headers["ETag"] == '"1"'
    client, headers = inv.client, inv.tenant.headers
    missing = await client.patch(f"/api/v1{path}", json={"name": "X"}, headers=headers)
    assert missing.status_code == 428
    stale = await client.patch(
        f"/api/v1{path}", json={"name": "X"}, headers={**headers, "If-Match": '"7"'}
    )
    assert stale.status_code == 412
    updated = await client.patch(
        f"/api/v1{path}", json={"name": "Renamed"}, headers={**headers, "If-Match": '"1"'}
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "Renamed" and updated.headers["ETag"] == '"2"'
    assert (await client.delete(f"/api/v1{path}", headers=headers)).status_code == 204
    assert (await inv.get(path)).json()["archived_at"] is not None
    loc = (await inv.location())["code"]
    assert (await inv.move(product["sku"], loc, "receipt", 1)).status_code == 409
    live = (await inv.get("/products", archived="false", q=product["sku"])).json()["items"]
    assert live == []


async def test_duplicate_sku_and_code_are_409(inv: Inventory) -> None:
    await inv.product("DUP-1")
    assert (await inv.post("/products", {"sku": "DUP-1", "name": "again"})).status_code == 409
    await inv.location("DUP-L")
    assert (await inv.post("/locations", {"code": "DUP-L", "name": "again"})).status_code == 409


async def test_product_list_filters_by_prefix_and_paginates(inv: Inventory) -> None:
    for sku in ("BOLT-1", "BOLT-2", "BOLT-3", "NUT-1"):
        await inv.product(sku)
    first = (await inv.get("/products", q="BOLT", limit=2)).json()
    assert [p["sku"] for p in first["items"]] == ["BOLT-1", "BOLT-2"]
    rest = (await inv.get("/products", q="BOLT", limit=2, cursor=first["next_cursor"])).json()
    assert [p["sku"] for p in rest["items"]] == ["BOLT-3"]
    assert (await inv.get("/products", q="bolt_")).json()["items"] == []


async def test_stock_below_reorder_point(inv: Inventory) -> None:
    low = await inv.product(reorder_point=10)
    fine = await inv.product(reorder_point=1)
    loc = (await inv.location())["code"]
    await inv.receive(low["sku"], loc, 3)
    await inv.receive(fine["sku"], loc, 3)
    items = (await inv.get("/stock", below_reorder_point="true")).json()["items"]
    assert [item["sku"] for item in items] == [low["sku"]]
    assert items[0]["available"] == 3 and items[0]["reorder_point"] == 10


async def test_viewer_reads_but_cannot_write(client: httpx.AsyncClient, inv: Inventory) -> None:
    from tests.support.crew import add_user
    from tests.support.helpers import bearer

    _, viewer_token = await add_user(client, inv.tenant, "viewer")
    denied = await client.post(
        "/api/v1/products", json={"sku": "V-1", "name": "x"}, headers=bearer(viewer_token)
    )
    assert denied.status_code == 403
    assert (await client.get("/api/v1/stock", headers=bearer(viewer_token))).status_code == 200


async def test_bulk_issue_against_an_existing_balance(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, 5)
    response = await inv.post("/movements/bulk", {"items": [_item(sku, loc, "issue", 2)]})
    assert response.status_code == 201, response.text
    assert (await inv.balance(sku, loc))["on_hand"] == 3


async def test_text_the_database_cannot_store_is_422_not_500(inv: Inventory) -> None:
    response = await inv.post("/products", {"sku": "NUL-1", "name": "bad\u0000name"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert (await inv.get("/products", q="NUL-1")).json()["items"] == []
    search = await inv.get("/stock", sku="x\u0000y")
    assert search.status_code == 422


def test_a_batch_takes_stock_only_when_some_balance_nets_negative() -> None:
    """Which way a batch is applied: one upsert when no balance's net change is negative
    (the shortage check could not fail), else held, checked and applied."""

    def batch(*items: tuple[str, str, int]) -> list[StagedMovement]:
        return [
            (index, uuid.uuid4(), sku, code, "adjustment", delta, None, None, None)
            for index, (sku, code, delta) in enumerate(items)
        ]

    assert not takes_stock(batch(("A", "X", 5), ("B", "X", 1)))
    # An issue the same batch covers on the same balance takes nothing in the end.
    assert not takes_stock(batch(("A", "X", -3), ("A", "X", 3)))
    # The same SKU elsewhere does not cover it; nor does another SKU at the same place.
    assert takes_stock(batch(("A", "X", -3), ("A", "Y", 10)))
    assert takes_stock(batch(("A", "X", -3), ("B", "X", 10)))
    assert takes_stock(batch(("A", "X", 2), ("A", "X", -3)))
