"""The event log: every change of stock, reservations and the catalogue is an event written by
the same transaction, read back through GET /api/v1/events as the tenant's feed."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core import tenancy
from stockyard.core.database import (
    TenantWrites,
    create_engine,
    create_sessionmaker,
    fetch,
    owner_url,
)
from stockyard.core.ids import new_id
from stockyard.core.settings import Settings
from stockyard.events import repository as events_repository
from stockyard.inventory.ledger import maintenance
from stockyard.inventory.ledger import repository as ledger_repository
from tests.support.helpers import Tenant
from tests.support.inventory import Inventory


async def _feed(inv: Inventory, after: str | None = None, **params: Any) -> dict[str, Any]:
    response = await inv.get("/events", **({"after": after} if after else {}), **params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _all_events(inv: Inventory, after: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Every visible event from `after` on, walking the pages; and where to resume."""
    events: list[dict[str, Any]] = []
    cursor = after
    while True:
        page = await _feed(inv, cursor, limit=200)
        events += page["items"]
        cursor = page["next_cursor"] or cursor
        if not page["has_more"]:
            return events, cursor or ""


async def _position(inv: Inventory) -> str | None:
    """Where the feed ends now."""
    return (await _all_events(inv))[1] or None


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def test_each_kind_of_change_writes_its_events(inv: Inventory) -> None:
    product = await inv.product(reorder_point=5)
    location = await inv.location()
    sku, loc = product["sku"], location["code"]
    events, cursor = await _all_events(inv)
    assert _types(events) == ["product.created", "location.created"]
    assert events[0]["data"]["sku"] == sku and events[0]["data"]["version"] == 1

    receipt = await inv.move(sku, loc, "receipt", 10)
    assert receipt.status_code == 201
    events, cursor = await _all_events(inv, cursor)
    assert _types(events) == ["stock.changed", "stock.restocked"]
    changed = events[0]["data"]
    assert (changed["sku"], changed["location"], changed["on_hand"], changed["available"]) == (
        sku,
        loc,
        10,
        10,
    )
    assert changed["movement_ids"] == [receipt.json()["movement"]["id"]]
    assert changed["movement_count"] == 1
    assert events[0]["request_id"] == receipt.headers["x-request-id"]
    first_sequence = changed["sequence"]

    await inv.move(sku, loc, "issue", 7)  # 10 -> 3, below the reorder point of 5
    events, cursor = await _all_events(inv, cursor)
    assert _types(events) == ["stock.changed", "stock.low"]
    assert events[1]["data"]["previous_available"] == 10
    assert events[1]["data"]["available"] == 3
    assert events[0]["data"]["sequence"] > first_sequence

    held = await inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 3})
    assert held.status_code == 201
    events, cursor = await _all_events(inv, cursor)
    assert _types(events) == ["reservation.created", "stock.changed", "stock.out"]
    assert events[0]["data"]["id"] == held.json()["reservation"]["id"]
    assert (events[1]["data"]["reserved"], events[1]["data"]["available"]) == (3, 0)

    reservation_id = held.json()["reservation"]["id"]
    released = await inv.post(f"/reservations/{reservation_id}/release", {})
    assert released.status_code == 200, released.text
    events, cursor = await _all_events(inv, cursor)
    assert _types(events) == ["reservation.released", "stock.changed", "stock.low"]

    held = await inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 1})
    await _all_events(inv, cursor)
    cursor = await _position(inv)
    committed = await inv.post(f"/reservations/{held.json()['reservation']['id']}/commit", {})
    assert committed.status_code == 200, committed.text
    events, cursor = await _all_events(inv, cursor)
    assert _types(events) == ["reservation.committed", "stock.changed"]
    assert events[1]["data"]["movement_ids"] == [committed.json()["movement"]["id"]]
    assert events[1]["data"]["on_hand"] == 2

    other = await inv.location()
    await _all_events(inv, cursor)
    cursor = await _position(inv)
    moved = await inv.post(
        "/transfers",
        {"sku": sku, "from_location": loc, "to_location": other["code"], "quantity": 2},
    )
    assert moved.status_code == 201, moved.text
    events, cursor = await _all_events(inv, cursor)
    # The source goes from 2 available to none, the target from none to 2 (below 5).
    assert sorted(_types(events)) == ["stock.changed", "stock.changed", "stock.low", "stock.out"]
    assert {e["data"]["location"] for e in events if e["type"] == "stock.changed"} == {
        loc,
        other["code"],
    }

    bulk = await inv.post(
        "/movements/bulk",
        {
            "items": [{"sku": sku, "location": loc, "kind": "receipt", "quantity": 1}] * 30
            + [{"sku": sku, "location": other["code"], "kind": "receipt", "quantity": 2}] * 20
        },
    )
    assert bulk.status_code == 201, bulk.text
    events, cursor = await _all_events(inv, cursor)
    changed_by_location = {
        e["data"]["location"]: e["data"] for e in events if e["type"] == "stock.changed"
    }
    assert changed_by_location[loc]["movement_count"] == 30
    assert len(set(changed_by_location[loc]["movement_ids"])) == 30
    assert changed_by_location[other["code"]]["movement_count"] == 20
    # One per balance, not per movement; both balances climb back to the reorder point.
    assert sorted(_types(events)) == sorted(["stock.changed"] * 2 + ["stock.restocked"] * 2)

    updated = await inv.client.patch(
        f"/api/v1/products/{product['id']}",
        json={"name": "Renamed"},
        headers={**inv.tenant.headers, "If-Match": '"1"'},
    )
    assert updated.status_code == 200, updated.text
    archived = await inv.client.delete(
        f"/api/v1/products/{product['id']}", headers=inv.tenant.headers
    )
    assert archived.status_code == 204
    events, _ = await _all_events(inv, cursor)
    assert _types(events) == ["product.updated", "product.archived"]
    assert events[0]["data"]["name"] == "Renamed"
    assert events[1]["data"]["archived_at"] is not None


async def test_a_request_that_fails_leaves_no_event(inv: Inventory) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, 2)
    cursor = await _position(inv)
    failures = [
        await inv.move(sku, loc, "issue", 5),  # 409 insufficient stock
        await inv.post("/reservations", {"sku": sku, "location": loc, "quantity": 9}),  # 409
        await inv.post(  # 409: the batch would oversell, so none of it applies
            "/movements/bulk",
            {
                "items": [
                    {"sku": sku, "location": loc, "kind": "receipt", "quantity": 1},
                    {"sku": sku, "location": loc, "kind": "issue", "quantity": 50},
                ]
            },
        ),
        await inv.post(  # 422: an unknown SKU in the batch
            "/movements/bulk",
            {
                "items": [
                    {"sku": sku, "location": loc, "kind": "receipt", "quantity": 1},
                    {"sku": "NO-SUCH-SKU", "location": loc, "kind": "receipt", "quantity": 1},
                ]
            },
        ),
        await inv.post("/products", {"sku": sku, "name": "Twin"}),  # 409 SKU taken
    ]
    assert [r.status_code for r in failures] == [409, 409, 409, 422, 409]
    events, _ = await _all_events(inv, cursor)
    assert events == []
    assert (await inv.balance(sku, loc))["on_hand"] == 2


async def test_expiry_by_the_sweep_and_on_the_way_is_announced(
    inv: Inventory, app: FastAPI
) -> None:
    sku = (await inv.product())["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, 5)
    swept = await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 2, "expires_in_seconds": 1}
    )
    await asyncio.sleep(1.2)
    cursor = await _position(inv)
    await maintenance.sweep(app.state.services.sessionmaker)
    events, cursor = await _all_events(inv, cursor)
    assert _types(events) == ["stock.changed", "reservation.expired"]
    assert events[1]["data"]["id"] == swept.json()["reservation"]["id"]
    assert events[1]["data"]["quantity"] == 2
    assert events[0]["data"]["reserved"] == 0
    assert events[0]["request_id"] is None  # no request: the sweep did it

    lazily = await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 3, "expires_in_seconds": 1}
    )
    await asyncio.sleep(1.2)
    await _all_events(inv, cursor)
    cursor = await _position(inv)
    await inv.receive(sku, loc, 1)  # lets the overdue reservation go first
    events, _ = await _all_events(inv, cursor)
    assert _types(events) == ["stock.changed", "reservation.expired"]
    assert events[1]["data"]["id"] == lazily.json()["reservation"]["id"]
    assert (events[0]["data"]["on_hand"], events[0]["data"]["reserved"]) == (6, 0)


async def test_a_bulk_batch_that_lets_a_reservation_go_announces_each_balance_once(
    inv: Inventory,
) -> None:
    """Bulk ingest writes its balances' events in SQL; the reservation it lets expire on the
    way counts in the same stock.changed (one per balance) and in its crossing, and is
    announced itself, as every other writer does it."""
    sku = (await inv.product(reorder_point=10))["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, 6)
    held = await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 4, "expires_in_seconds": 1}
    )
    assert held.status_code == 201, held.text
    await asyncio.sleep(1.2)
    cursor = await _position(inv)
    # available was 2 (6 on hand, 4 held): the batch adds 5 and the expiry frees 4 -> 11.
    bulk = await inv.post(
        "/movements/bulk",
        {"items": [{"sku": sku, "location": loc, "kind": "receipt", "quantity": 1}] * 5},
    )
    assert bulk.status_code == 201, bulk.text
    events, _ = await _all_events(inv, cursor)
    assert sorted(_types(events)) == ["reservation.expired", "stock.changed", "stock.restocked"]
    by_type = {event["type"]: event for event in events}
    changed = by_type["stock.changed"]["data"]
    assert (changed["on_hand"], changed["reserved"], changed["available"]) == (11, 0, 11)
    assert changed["movement_count"] == 5 and len(changed["movement_ids"]) == 5
    assert by_type["stock.restocked"]["data"]["previous_available"] == 2
    assert by_type["reservation.expired"]["data"]["id"] == held.json()["reservation"]["id"]
    assert by_type["reservation.expired"]["data"]["sku"] == sku
    # The batch's pair is in order: stock.changed, then its crossing.
    order = _types(events)
    assert order.index("stock.changed") < order.index("stock.restocked")
    assert {event["request_id"] for event in events} == {bulk.headers["x-request-id"]}


async def test_a_bulk_batch_that_takes_stock_counts_the_reservation_it_lets_go(
    inv: Inventory,
) -> None:
    """A batch in which some balance's net change is negative is checked for shortage
    before it is applied (a batch that only adds skips the check); its events count the
    reservation it lets expire exactly as a batch that only adds does (above)."""
    sku = (await inv.product(reorder_point=3))["sku"]
    loc = (await inv.location())["code"]
    await inv.receive(sku, loc, 6)
    held = await inv.post(
        "/reservations", {"sku": sku, "location": loc, "quantity": 5, "expires_in_seconds": 1}
    )
    assert held.status_code == 201, held.text
    await asyncio.sleep(1.2)
    cursor = await _position(inv)
    # available was 1 (6 on hand, 5 held): the batch takes 2 net, which only the hold's
    # expiry makes possible, and the expiry frees 5 -> 4 on hand, 4 available.
    bulk = await inv.post(
        "/movements/bulk",
        {
            "items": [
                {"sku": sku, "location": loc, "kind": "receipt", "quantity": 1},
                {"sku": sku, "location": loc, "kind": "issue", "quantity": 3},
            ]
        },
    )
    assert bulk.status_code == 201, bulk.text
    events, _ = await _all_events(inv, cursor)
    assert sorted(_types(events)) == ["reservation.expired", "stock.changed", "stock.restocked"]
    by_type = {event["type"]: event for event in events}
    changed = by_type["stock.changed"]["data"]
    assert (changed["on_hand"], changed["reserved"], changed["available"]) == (4, 0, 4)
    assert changed["movement_count"] == 2
    assert by_type["stock.restocked"]["data"]["previous_available"] == 1
    assert by_type["reservation.expired"]["data"]["id"] == held.json()["reservation"]["id"]


async def test_the_feed_shows_one_tenant_pages_filters_and_refuses_forged_cursors(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine, theirs = Inventory(client, tenant), Inventory(client, other_tenant)
    for _ in range(3):
        await mine.product()
    await theirs.product()
    everything = (await _feed(mine, limit=500))["items"]
    assert len(everything) == 3
    assert (await _feed(theirs, limit=500))["items"][0]["data"]["sku"] not in {
        event["data"]["sku"] for event in everything
    }

    first = await _feed(mine, limit=2)
    assert [e["id"] for e in first["items"]] == [e["id"] for e in everything[:2]]
    assert first["has_more"] is True
    second = await _feed(mine, first["next_cursor"], limit=2)
    assert [e["id"] for e in second["items"]] == [everything[2]["id"]]
    assert second["has_more"] is False
    # At the end the cursor still says where to resume, and resuming there finds nothing yet.
    at_end = await _feed(mine, second["next_cursor"])
    assert at_end["items"] == [] and at_end["next_cursor"] == second["next_cursor"]
    # A position is only a position: another tenant resuming from ours sees its own events.
    their_skus = {e["data"]["sku"] for e in (await _feed(theirs, second["next_cursor"]))["items"]}
    assert their_skus and not their_skus & {event["data"]["sku"] for event in everything}

    only = await _feed(mine, type="location.created")
    assert only["items"] == []
    unknown_type = await mine.get("/events", type="stock.vanished")
    assert unknown_type.status_code == 422

    for forged in ["x", "WyIxIl0", "WyItMSIsICJ4Il0", "WyI5OTk5OTk5OTk5OTk5OTk5OTk5OTk5IiwgIngiXQ"]:
        response = await mine.get("/events", after=forged)
        assert response.status_code == 422, forged
        assert response.json()["error"]["code"] == "invalid_cursor"


async def test_a_transaction_that_commits_late_is_never_skipped(
    inv: Inventory, tenant: Tenant, app_db: asyncpg.Connection
) -> None:
    """Events are ordered by the writing transaction, and the feed stops short of any that may
    still commit: a reader that has passed a position never misses what commits behind it."""
    await inv.product()
    cursor = await _position(inv)
    slow = app_db.transaction()
    await slow.start()
    await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
    late_id = new_id()
    await app_db.execute(
        "INSERT INTO event (tenant_id, id, type, data) VALUES ($1, $2, 'product.updated', '{}')",
        tenant.id,
        late_id,
    )
    try:
        await inv.product()  # a later transaction, committed first
        while_open, _ = await _all_events(inv, cursor)
        assert while_open == []  # held back behind the open transaction, not shown past it
    finally:
        await slow.commit()
    events, _ = await _all_events(inv, cursor)
    assert events[0]["id"] == str(late_id)
    assert _types(events) == ["product.updated", "product.created"]


async def test_every_writer_at_once_every_movement_announced_and_sequences_tell_the_latest(
    inv: Inventory, app: FastAPI, app_db: asyncpg.Connection, tenant: Tenant
) -> None:
    skus = [(await inv.product())["sku"] for _ in range(2)]
    locs = [(await inv.location())["code"] for _ in range(3)]
    for sku in skus:
        for loc in locs:
            await inv.receive(sku, loc, 50)
    rng = random.Random(7)

    answers: list[int] = []

    async def writer(index: int) -> None:
        sku, loc = rng.choice(skus), rng.choice(locs)
        choice = index % 5
        if choice == 0:
            sent = await inv.move(sku, loc, rng.choice(["receipt", "issue"]), rng.randint(1, 4))
        elif choice == 1:
            sent = await inv.post(
                "/movements/bulk",
                {
                    "items": [
                        {
                            "sku": rng.choice(skus),
                            "location": rng.choice(locs),
                            "kind": "receipt",
                            "quantity": 1,
                        }
                        for _ in range(15)
                    ]
                },
            )
        elif choice == 2:
            target = rng.choice([code for code in locs if code != loc])
            sent = await inv.post(
                "/transfers",
                {"sku": sku, "from_location": loc, "to_location": target, "quantity": 2},
            )
        elif choice == 3:
            sent = await inv.post(
                "/reservations",
                {"sku": sku, "location": loc, "quantity": 2, "expires_in_seconds": 1},
            )
            if sent.status_code == 201 and rng.random() < 0.5:
                reservation_id = sent.json()["reservation"]["id"]
                sent = await inv.post(f"/reservations/{reservation_id}/commit", {})
        else:
            await maintenance.sweep(app.state.services.sessionmaker)
            return
        answers.append(sent.status_code)

    await asyncio.gather(*(writer(i) for i in range(40)))
    assert set(answers) <= {200, 201, 409} and 201 in answers, answers
    await asyncio.sleep(1.1)
    await maintenance.sweep(app.state.services.sessionmaker)

    events, _ = await _all_events(inv)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    sequences: dict[tuple[str, str], list[int]] = defaultdict(list)
    announced: set[str] = set()
    for event in events:
        if event["type"] != "stock.changed":
            continue
        data = event["data"]
        key = (data["sku"], data["location"])
        sequences[key].append(data["sequence"])
        if key not in latest or data["sequence"] > latest[key]["sequence"]:
            latest[key] = data
        assert data["movement_count"] == len(data["movement_ids"])  # none truncated here
        announced.update(data["movement_ids"])
    async with app_db.transaction():  # as the app role: row-level security shows this tenant
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
        balances = await app_db.fetch(
            "SELECT p.sku, l.code, b.on_hand, b.reserved, b.version FROM balance b "
            "JOIN product p ON p.id = b.product_id JOIN location l ON l.id = b.location_id"
        )
        movement_ids = {str(r["id"]) for r in await app_db.fetch("SELECT id FROM movement")}
    # Every movement of the ledger is named by a stock.changed event.
    assert movement_ids and movement_ids <= announced
    for row in balances:
        key = (row["sku"], row["code"])
        # No two events of one balance share a sequence, and the highest is how it stands.
        assert len(sequences[key]) == len(set(sequences[key])), key
        assert (latest[key]["on_hand"], latest[key]["reserved"], latest[key]["sequence"]) == (
            row["on_hand"],
            row["reserved"],
            row["version"],
        ), key


@pytest.mark.parametrize("kind", ["session", "driver"])
async def test_a_commit_with_unannounced_stock_changes_is_refused(
    app: FastAPI, tenant: Tenant, app_db: asyncpg.Connection, kind: str
) -> None:
    """A writer that changes a balance and forgets its events cannot commit, on an ORM
    session or on the ledger routes' driver transaction (TenantWrites): the change is rolled
    back, not kept without its stock.changed."""
    inv_product, inv_location = uuid.uuid4(), uuid.uuid4()
    services = app.state.services
    writes: AsyncSession | TenantWrites
    if kind == "session":
        writes = services.sessionmaker()
        tenancy.scope_to_tenant(writes, tenant.id)
    else:
        writes = TenantWrites(services.writer_pool, tenant.id, timeout=5.0)
    try:
        await fetch(
            writes,
            "INSERT INTO product (tenant_id, id, sku, name) VALUES (:t, :p, 'SILENT', 'x')",
            {"t": tenant.id, "p": inv_product},
        )
        await fetch(
            writes,
            "INSERT INTO location (tenant_id, id, code, name) VALUES (:t, :l, 'SILENT', 'x')",
            {"t": tenant.id, "l": inv_location},
        )
        await ledger_repository.apply_delta(
            writes, tenant_id=tenant.id, product_id=inv_product, location_id=inv_location, delta=5
        )
        with pytest.raises(RuntimeError, match="without its events"):
            if isinstance(writes, TenantWrites):
                await writes.close(commit=True)
            else:
                await writes.commit()
    finally:
        if isinstance(writes, TenantWrites):
            await writes.close(commit=False)
        else:
            await writes.close()
    async with app_db.transaction():
        await app_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
        assert await app_db.fetchval("SELECT count(*) FROM product WHERE sku = 'SILENT'") == 0
    # The refused transaction gave its connection back, rolled back and with no tenant.
    async with services.writer_pool.acquire() as connection:
        assert not connection.is_in_transaction()
        assert await connection.fetchval("SELECT current_setting('app.tenant_id', true)") in (
            None,
            "",
        )


async def test_retention_drops_whole_months_past_the_horizon_only(
    owner_db: asyncpg.Connection, settings: Settings, tenant: Tenant
) -> None:
    await owner_db.execute(
        "CREATE TABLE event_y2020m01 PARTITION OF event "
        "FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')"
    )
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
        await owner_db.execute(
            "INSERT INTO event (tenant_id, occurred_at, id, type, data) "
            "VALUES ($1, '2020-01-15', $2, 'product.created', '{}')",
            tenant.id,
            new_id(),
        )
    engine = create_engine(owner_url(settings), settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            created = await events_repository.ensure_partitions(session)
            dropped = await events_repository.drop_partitions_before(
                session, datetime.now(UTC) - timedelta(days=settings.event_retention_days)
            )
            current = await events_repository.ensure_partitions(session)
    finally:
        await engine.dispose()
    assert dropped == ["event_y2020m01"]
    assert current == []  # this month and the next ones are all still there
    assert created == []  # stockyard migrate made them already
    remaining = {
        row["relname"]
        for row in await owner_db.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'event'::regclass"
        )
    }
    assert "event_default" in remaining and "event_y2020m01" not in remaining
    assert f"event_y{datetime.now(UTC):%Y}m{datetime.now(UTC):%m}" in remaining
