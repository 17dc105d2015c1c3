from __future__ import annotations

import asyncio

from stockyard.core.settings import Settings
from stockyard.inventory.ledger import maintenance
from tests.support.cli import run_cli
from tests.support.inventory import Inventory


async def _stocked(inv: Inventory, quantity: int) -> tuple[str, str]:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, quantity)
    return sku, loc


async def test_reserve_commit_and_release(inv: Inventory) -> None:
    sku, loc = await _stocked(inv, 10)
    held = await inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 4})
    assert held.status_code == 201
    assert held.json()["balance"] == {
        "sku": sku,
        "location": loc,
        "on_hand": 10,
        "reserved": 4,
        "available": 6,
    }
    reservation_id = held.json()["reservation"]["id"]
    # Held stock can't be issued away from under the reservation.
    assert (await inv.move(sku, loc, "issue", 7)).status_code == 409
    committed = await inv.post(f"/reservations/{reservation_id}/commit", {})
    assert committed.status_code == 200
    assert committed.json()["movement"]["kind"] == "reservation_commit"
    assert committed.json()["movement"]["delta"] == -4
    assert committed.json()["balance"]["on_hand"] == 6
    assert committed.json()["balance"]["reserved"] == 0
    again = await inv.post(f"/reservations/{reservation_id}/commit", {})
    assert again.status_code == 409

    second = (await inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 6})).json()
    released = await inv.post(f"/reservations/{second['reservation']['id']}/release", {})
    assert released.json()["reservation"]["status"] == "released"
    assert (await inv.balance(sku, loc))["available"] == 6


async def test_reservation_beyond_available_is_409(inv: Inventory) -> None:
    sku, loc = await _stocked(inv, 3)
    response = await inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 4})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_stock"


async def test_concurrent_reservations_never_exceed_on_hand(inv: Inventory) -> None:
    sku, loc = await _stocked(inv, 50)
    responses = await asyncio.gather(
        *(
            inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 1})
            for _ in range(80)
        )
    )
    assert [r.status_code for r in responses].count(201) == 50
    balance = await inv.balance(sku, loc)
    assert balance["reserved"] == 50 and balance["available"] == 0


async def test_expired_reservation_frees_stock_lazily_on_next_touch(inv: Inventory) -> None:
    sku, loc = await _stocked(inv, 5)
    held = await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 5, "expires_in_seconds": 1}
    )
    reservation_id = held.json()["reservation"]["id"]
    await asyncio.sleep(1.2)
    issued = await inv.move(sku, loc, "issue", 5)
    assert issued.status_code == 201, issued.text
    assert issued.json()["balance"] == {
        "sku": sku,
        "location": loc,
        "on_hand": 0,
        "reserved": 0,
        "available": 0,
    }
    assert (await inv.get(f"/reservations/{reservation_id}")).json()["status"] == "expired"
    late = await inv.post(f"/reservations/{reservation_id}/commit", {})
    assert late.status_code == 409


async def test_a_change_lets_the_overdue_holds_go_and_keeps_the_live_ones(
    inv: Inventory,
) -> None:
    """A movement lets its balance's overdue reservations go whether it adds stock (after
    the change) or takes it (before trying again, once refused); live holds stay held, and
    the balance it answers with is the one stored."""
    sku, loc = await _stocked(inv, 10)
    overdue = await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 3, "expires_in_seconds": 1}
    )
    live = await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 2, "expires_in_seconds": 600}
    )
    await asyncio.sleep(1.2)
    received = await inv.move(sku, loc, "receipt", 1)
    assert received.status_code == 201, received.text
    expected = {"sku": sku, "location": loc, "on_hand": 11, "reserved": 2, "available": 9}
    assert received.json()["balance"] == expected
    stored = await inv.balance(sku, loc)
    assert {name: stored[name] for name in expected} == expected
    status = {
        held.json()["reservation"]["id"]: (
            await inv.get(f"/reservations/{held.json()['reservation']['id']}")
        ).json()["status"]
        for held in (overdue, live)
    }
    assert list(status.values()) == ["expired", "active"]
    assert (await inv.move(sku, loc, "issue", 10)).status_code == 409
    issued = await inv.move(sku, loc, "issue", 9)
    assert issued.status_code == 201, issued.text
    assert issued.json()["balance"] == {**expected, "on_hand": 2, "available": 0}


async def test_sweep_expires_reservations_without_a_touch(inv: Inventory, app: object) -> None:
    sku, loc = await _stocked(inv, 5)
    await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 2, "expires_in_seconds": 1}
    )
    assert (await inv.balance(sku, loc))["reserved"] == 2
    await asyncio.sleep(1.2)
    # No request touches it: the sweep lets it go (the tests' apps sweep on no timer).
    released, _ = await maintenance.sweep(app.state.services.sessionmaker)  # type: ignore[attr-defined]
    assert released >= 1
    assert (await inv.balance(sku, loc))["reserved"] == 0
    listed = (await inv.get("/reservations", status="expired")).json()["items"]
    assert any(item["sku"] == sku for item in listed)


async def test_check_reports_no_drift_then_drift(
    inv: Inventory, settings: Settings, owner_db: object
) -> None:
    sku, loc = await _stocked(inv, 7)
    await inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 2})
    code, output = await run_cli(settings, "check", "--tenant", inv.tenant.slug)
    assert code == 0, output
    assert "no drift" in output
    # Tamper with a balance behind the ledger's back, as the owner.
    await owner_db.execute(  # type: ignore[attr-defined]
        "UPDATE balance SET on_hand = on_hand + 1 WHERE tenant_id = $1", inv.tenant.id
    )
    code, output = await run_cli(settings, "check", "--tenant", inv.tenant.slug)
    assert code == 1
    assert f"sku={sku}" in output and "on_hand=8 ledger=7" in output
