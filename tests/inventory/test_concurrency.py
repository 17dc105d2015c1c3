"""Every kind of ledger writer at once, over real HTTP: nothing lost, no deadlock, no 500."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from stockyard.core.database import app_url, create_engine, create_sessionmaker
from stockyard.core.settings import Settings
from stockyard.inventory.ledger import maintenance
from tests.conftest import make_settings, running_app
from tests.support.helpers import Tenant, signup
from tests.support.inventory import Inventory
from tests.support.ledger import balances_against_ledger, drifted
from tests.support.live import LiveServer
from tests.support.services import TestServices


@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=live.url, timeout=120, limits=limits) as client:
        yield client


@pytest.fixture
async def tenant_live(http: httpx.AsyncClient) -> Tenant:
    return await signup(http)


async def test_bulk_racing_single_receipts_on_new_balances_loses_nothing(
    http: httpx.AsyncClient, tenant_live: Tenant, app_db: asyncpg.Connection
) -> None:
    """A bulk of ~10,000 receipts holding +1 on 40 balances that do not exist yet, while a
    single +1 receipt for each of those balances arrives 10 ms after the previous one: every
    balance ends at 2, equal to its ledger."""
    inv = Inventory(http, tenant_live)
    p0 = (await inv.product())["sku"]
    existing = [(await inv.product())["sku"] for _ in range(5)]
    shelf = (await inv.location())["code"]
    fresh = [(await inv.location())["code"] for _ in range(40)]
    bulk_items: list[dict[str, Any]] = [
        {"sku": existing[i % 5], "location": shelf, "kind": "receipt", "quantity": 1}
        for i in range(9_960)
    ]
    bulk_items += [
        {"sku": p0, "location": code, "kind": "receipt", "quantity": 1} for code in fresh
    ]

    async def singles() -> list[httpx.Response]:
        sent = []
        for code in fresh:
            sent.append(asyncio.create_task(inv.move(p0, code, "receipt", 1)))
            await asyncio.sleep(0.01)
        return list(await asyncio.gather(*sent))

    bulk, single_responses = await asyncio.gather(
        inv.post("/movements/bulk", {"items": bulk_items}), singles()
    )
    assert bulk.status_code == 201, bulk.text
    assert [r.status_code for r in single_responses] == [201] * 40
    rows = await balances_against_ledger(app_db, tenant_live.id)
    assert not drifted(rows)
    fresh_rows = [row for row in rows if row["sku"] == p0]
    assert sorted(row["code"] for row in fresh_rows) == sorted(fresh)
    assert {row["on_hand"] for row in fresh_rows} == {2}


async def _expire_many(
    owner_db: asyncpg.Connection, tenant_id: Any, sku: str, codes: tuple[str, str], count: int
) -> None:
    """`count` reservations of 1 on each balance whose deadline has just passed, their expiry
    times interleaved across the two balances (the clock moved, not the rules: the rows are
    what the API writes for a reservation, and reserved is raised to match)."""
    await owner_db.execute(
        """
        WITH keys AS (
            SELECT p.id AS product_id, l.id AS location_id,
                   row_number() OVER (ORDER BY l.id DESC) AS rank
            FROM product p JOIN location l ON l.tenant_id = p.tenant_id
            WHERE p.tenant_id = $1 AND p.sku = $2 AND l.code = ANY($3::text[])
        ), made AS (
            INSERT INTO reservation (tenant_id, id, product_id, location_id, quantity, expires_at)
            SELECT $1, gen_random_uuid(), k.product_id, k.location_id, 1,
                   now() - interval '1 minute' + (2 * g + k.rank) * interval '1 ms'
            FROM keys k, generate_series(1, $4) g
            RETURNING product_id, location_id
        )
        UPDATE balance b SET reserved = b.reserved + $4
        FROM keys k
        WHERE b.tenant_id = $1 AND b.product_id = k.product_id AND b.location_id = k.location_id
          AND (SELECT count(*) FROM made) > 0
        """,
        tenant_id,
        sku,
        list(codes),
        count,
    )


async def _sweeps(sweeper: Any) -> None:
    """Sweeps starting every few milliseconds, so some begin while transfers and the bulk
    are between their two balances."""
    await asyncio.gather(*(_sweep_after(sweeper, 0.004 * step) for step in range(12)))


async def _sweep_after(sweeper: Any, delay: float) -> None:
    await asyncio.sleep(delay)
    await maintenance.sweep(sweeper)


async def test_sweep_transfers_lazy_expiry_and_bulk_share_balances_without_deadlock(
    http: httpx.AsyncClient,
    tenant_live: Tenant,
    app_db: asyncpg.Connection,
    owner_db: asyncpg.Connection,
    settings: Settings,
) -> None:
    """Both legs of opposite transfers hold hundreds of reservations that have just expired;
    the periodic sweep, the transfers (which expire lazily), two bulks over both balances
    (one that takes stock, one that does not), single movements and new reservations all run
    at once, round after round. No answer is
    a 5xx, and every balance equals its ledger and its live reservations."""
    inv = Inventory(http, tenant_live)
    sku = (await inv.product())["sku"]
    a, b = (await inv.location())["code"], (await inv.location())["code"]
    await inv.receive(sku, a, 100_000)
    await inv.receive(sku, b, 100_000)

    def transfer(source: str, target: str) -> Any:
        body = {"sku": sku, "from_location": source, "to_location": target, "quantity": 1}
        return inv.post("/transfers", body)

    def reserve(code: str) -> Any:
        return inv.post("/reservations", {"sku": sku, "location": code, "quantity": 1})

    # The sweep runs as a second API process would: its own engine, as the app role.
    engine = create_engine(app_url(settings), settings)
    sweeper = create_sessionmaker(engine)
    statuses: list[int] = []
    try:
        for _ in range(8):
            await _expire_many(owner_db, tenant_live.id, sku, (a, b), 200)
            # Two bulks: one whose balances net zero (applied in one upsert) and one that
            # takes from both (held first and checked for shortage, then applied).
            adding_items = [
                {"sku": sku, "location": code, "kind": kind, "quantity": 1}
                for code in (b, a)
                for kind in ("receipt", "issue")
            ] * 50
            taking_items = [
                {"sku": sku, "location": code, "kind": kind, "quantity": quantity}
                for code in (a, b)
                for kind, quantity in (("issue", 2), ("receipt", 1))
            ] * 50
            requests = [
                _sweeps(sweeper),
                transfer(a, b),
                transfer(b, a),
                inv.post("/movements/bulk", {"items": adding_items}),
                inv.post("/movements/bulk", {"items": taking_items}),
                transfer(a, b),
                inv.move(sku, b, "issue", 1),
                inv.move(sku, a, "receipt", 1),
                reserve(a),
                reserve(b),
                transfer(b, a),
            ]
            results = await asyncio.gather(*requests, return_exceptions=True)
            assert not isinstance(results[0], BaseException), results[0]
            for result in results[1:]:
                assert isinstance(result, httpx.Response), result
                statuses.append(result.status_code)
                assert result.status_code < 500, result.text
    finally:
        await engine.dispose()
    assert set(statuses) == {201}
    assert not drifted(await balances_against_ledger(app_db, tenant_live.id))


async def test_concurrency_failures_answer_503_concurrent_update(
    client: httpx.AsyncClient, tenant: Tenant, owner_db: asyncpg.Connection
) -> None:
    """A writer outside the ledger's lock order (here: the owner, holding a balance row in a
    conflicting order) makes PostgreSQL pick a deadlock victim; when the victim is an API
    request, the answer is 503 concurrent_update with Retry-After, never a 500."""
    inv = Inventory(client, tenant)
    sku = (await inv.product())["sku"]
    first, second = sorted([(await inv.location())["code"], (await inv.location())["code"]])
    await inv.receive(sku, first, 10)
    await inv.receive(sku, second, 10)
    ids = await owner_db.fetch(
        "SELECT l.code, b.location_id FROM balance b JOIN location l ON l.id = b.location_id "
        "WHERE b.tenant_id = $1",
        tenant.id,
    )
    by_code = {row["code"]: row["location_id"] for row in ids}
    ordered = sorted(by_code.items(), key=lambda item: item[1])
    low_code, low_id = ordered[0]
    high_code, high_id = ordered[1]
    # The owner takes the HIGH balance first, the transfer takes LOW first (its key order);
    # then the owner asks for LOW: a cycle, and PostgreSQL aborts one of the two.
    transaction = owner_db.transaction()
    await transaction.start()
    try:
        await owner_db.execute(
            "SELECT 1 FROM balance WHERE tenant_id = $1 AND location_id = $2 FOR UPDATE",
            tenant.id,
            high_id,
        )
        moving = asyncio.create_task(
            inv.post(
                "/transfers",
                {"sku": sku, "from_location": low_code, "to_location": high_code, "quantity": 1},
            )
        )
        await asyncio.sleep(0.5)
        await owner_db.execute("SET LOCAL deadlock_timeout = '5s'")
        with contextlib.suppress(asyncpg.DeadlockDetectedError):
            await owner_db.execute(
                "SELECT 1 FROM balance WHERE tenant_id = $1 AND location_id = $2 FOR UPDATE",
                tenant.id,
                low_id,
            )
        response = await asyncio.wait_for(moving, 30)
    finally:
        await transaction.rollback()
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "concurrent_update"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Retry-After"] == "1"
    assert "deadlock" not in response.text.lower()


async def test_the_sweep_and_a_transfer_take_locks_in_one_order(
    client: httpx.AsyncClient,
    tenant: Tenant,
    owner_db: asyncpg.Connection,
    settings: Settings,
) -> None:
    """The interleaving that deadlocked when the sweep locked reservations before balances:
    a transfer holds its first leg and waits; the sweep starts; the transfer goes on to its
    second leg. With one lock order (balances by key, then their reservations) both finish."""
    inv = Inventory(client, tenant)
    sku = (await inv.product())["sku"]
    first, second = (await inv.location())["code"], (await inv.location())["code"]
    for code in (first, second):
        await inv.receive(sku, code, 100)
    rows = await owner_db.fetch(
        "SELECT l.code, l.id FROM location l WHERE l.tenant_id = $1", tenant.id
    )
    ids = {row["code"]: row["id"] for row in rows}
    low, high = sorted([first, second], key=lambda code: ids[code])
    # One reservation per leg, the high leg's first (the order a scan of them meets them).
    for code in (high, low):
        made = await inv.post("/reservations", {"sku": sku, "location": code, "quantity": 1})
        assert made.status_code == 201
    for code, age in ((high, "2 minutes"), (low, "1 minute")):
        await owner_db.execute(
            f"UPDATE reservation SET expires_at = now() - interval '{age}' "
            "WHERE tenant_id = $1 AND location_id = $2",
            tenant.id,
            ids[code],
        )
    engine = create_engine(app_url(settings), settings)
    sweeper = create_sessionmaker(engine)
    holding = owner_db.transaction()
    await holding.start()
    try:
        # Stall the transfer on its first (low) leg's balance.
        await owner_db.execute(
            "SELECT 1 FROM balance WHERE tenant_id = $1 AND location_id = $2 FOR UPDATE",
            tenant.id,
            ids[low],
        )
        moving = asyncio.create_task(
            inv.post(
                "/transfers", {"sku": sku, "from_location": low, "to_location": high, "quantity": 1}
            )
        )
        await asyncio.sleep(0.3)
        sweeping = asyncio.create_task(maintenance.sweep(sweeper))
        await asyncio.sleep(0.3)
    finally:
        await holding.rollback()
    try:
        moved, swept = await asyncio.wait_for(
            asyncio.gather(moving, sweeping, return_exceptions=True), 30
        )
    finally:
        await engine.dispose()
    assert not isinstance(swept, BaseException), swept
    assert isinstance(moved, httpx.Response) and moved.status_code == 201, moved
    app_rows = await owner_db.fetch(
        "SELECT status FROM reservation WHERE tenant_id = $1", tenant.id
    )
    assert {row["status"] for row in app_rows} == {"expired"}


async def test_writes_waiting_on_a_row_lock_leave_the_reads_their_connections(
    services: TestServices, owner_db: asyncpg.Connection
) -> None:
    """Ledger writes queued on a locked balance hold their connections; the hot reads run
    on a pool of their own, so they still answer at once (with one shared pool they waited
    out the pool timeout and answered 503)."""
    small = make_settings(services, db_pool_size=2, db_timeout_seconds=1.0)
    async with running_app(small) as (_, client):
        tenant = await signup(client)
        inv = Inventory(client, tenant)
        sku, code = (await inv.product())["sku"], (await inv.location())["code"]
        await inv.receive(sku, code, 10)
        lock = owner_db.transaction()
        await lock.start()
        try:
            await owner_db.execute(
                "SELECT 1 FROM balance b JOIN product p ON p.id = b.product_id "
                "WHERE p.sku = $1 AND b.tenant_id = $2 FOR UPDATE OF b",
                sku,
                tenant.id,
            )
            writes = [asyncio.create_task(inv.move(sku, code, "issue", 1)) for _ in range(2)]
            await asyncio.sleep(0.5)
            assert not any(write.done() for write in writes)  # both wait on the lock
            stock = await inv.get("/stock")
            assert stock.status_code == 200, stock.text
            assert stock.json()["items"][0]["on_hand"] == 10
        finally:
            await lock.rollback()
        assert [(await write).status_code for write in writes] == [201, 201]
        assert (await inv.balance(sku, code))["on_hand"] == 8
