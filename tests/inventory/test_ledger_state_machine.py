"""Any sequence of ledger operations leaves every balance equal to its ledger, never more
reserved than on hand, and every answer as a simple model predicts."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from stockyard.core.database import owner_url, to_libpq_dsn
from stockyard.core.settings import Settings
from stockyard.inventory.ledger import maintenance
from tests.conftest import running_app
from tests.support.helpers import Tenant, signup
from tests.support.inventory import Inventory

T = TypeVar("T")
LOCATIONS = ("A", "B", "C")


class LoopThread:
    """An event loop in a thread: the state machine is synchronous, the API is not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class World:
    def __init__(
        self,
        runner: LoopThread,
        client: httpx.AsyncClient,
        tenant: Tenant,
        owner: asyncpg.Connection,
        app: Any,
    ) -> None:
        self.runner, self.client, self.tenant, self.owner, self.app = (
            runner,
            client,
            tenant,
            owner,
            app,
        )


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[World]:
    runner = LoopThread()
    context = running_app(settings)
    app, client = runner.run(context.__aenter__())
    tenant = runner.run(signup(client))
    owner = runner.run(asyncpg.connect(to_libpq_dsn(owner_url(settings))))
    yield World(runner, client, tenant, owner, app)
    runner.run(owner.close())
    runner.run(context.__aexit__(None, None, None))
    runner.stop()


quantities = st.integers(min_value=1, max_value=20)
codes = st.sampled_from(LOCATIONS)
operations = st.one_of(
    st.tuples(st.sampled_from(["receipt", "issue"]), codes, quantities),
    st.tuples(st.just("adjustment"), codes, st.integers(-20, 20).filter(bool)),
    st.tuples(st.just("transfer"), codes, codes, quantities).filter(lambda t: t[1] != t[2]),
    st.tuples(st.just("reserve"), codes, quantities),
    st.tuples(
        st.just("bulk"),
        st.lists(
            st.tuples(codes, st.sampled_from(["receipt", "issue"]), quantities),
            min_size=1,
            max_size=6,
        ),
    ),
    # Which open reservation to close is picked by index when the batch runs: the draw itself
    # must not depend on what the server answered before (Hypothesis replays draws).
    st.tuples(st.just("close"), st.integers(0, 10_000), st.booleans()),
    st.just(("sweep",)),
)


class LedgerMachine(RuleBasedStateMachine):
    world: World
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.inv = Inventory(self.world.client, self.world.tenant)
        self.sku = f"SM-{secrets.token_hex(5)}"
        self.run(self.inv.product(self.sku))
        for code in LOCATIONS:
            self.run(self.inv.location(f"{self.sku}-{code}"))
        self.on_hand = dict.fromkeys(LOCATIONS, 0)
        # reservation id -> [location, quantity, expired]
        self.held: dict[str, list[Any]] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.world.runner.run(coro)

    def loc(self, code: str) -> str:
        return f"{self.sku}-{code}"

    def reserved_held(self, code: str) -> int:
        """What the balance still holds: live reservations and expired ones not yet let go
        (ck_balance_covered keeps it within on_hand; this says it is the right amount)."""
        return sum(q for loc, q, _ in self.held.values() if loc == code)

    def reserved_live(self, code: str) -> int:
        return sum(q for loc, q, expired in self.held.values() if loc == code and not expired)

    def forget_expired(self, code: str) -> None:
        """A successful touch of a balance lets its expired reservations go."""
        for reservation_id in [
            r for r, (loc, _, expired) in self.held.items() if loc == code and expired
        ]:
            del self.held[reservation_id]

    def change(self, code: str, delta: int, response: httpx.Response) -> None:
        allowed = self.on_hand[code] + delta >= self.reserved_live(code)
        assert response.status_code == (201 if allowed else 409), response.text
        if allowed:
            self.on_hand[code] += delta
            self.forget_expired(code)

    @rule(code=st.sampled_from(LOCATIONS), quantity=quantities)
    def receipt(self, code: str, quantity: int) -> None:
        self.change(
            code, quantity, self.run(self.inv.move(self.sku, self.loc(code), "receipt", quantity))
        )

    @rule(code=st.sampled_from(LOCATIONS), quantity=quantities)
    def issue(self, code: str, quantity: int) -> None:
        self.change(
            code, -quantity, self.run(self.inv.move(self.sku, self.loc(code), "issue", quantity))
        )

    @rule(code=st.sampled_from(LOCATIONS), quantity=st.integers(-20, 20).filter(bool))
    def adjustment(self, code: str, quantity: int) -> None:
        self.change(
            code,
            quantity,
            self.run(self.inv.move(self.sku, self.loc(code), "adjustment", quantity)),
        )

    @rule(source=st.sampled_from(LOCATIONS), dest=st.sampled_from(LOCATIONS), quantity=quantities)
    def transfer(self, source: str, dest: str, quantity: int) -> None:
        response = self.run(
            self.inv.post(
                "/transfers",
                {
                    "sku": self.sku,
                    "from_location": self.loc(source),
                    "to_location": self.loc(dest),
                    "quantity": quantity,
                },
            )
        )
        if source == dest:
            assert response.status_code == 422
            return
        allowed = self.on_hand[source] - quantity >= self.reserved_live(source)
        assert response.status_code == (201 if allowed else 409), response.text
        if allowed:
            self.on_hand[source] -= quantity
            self.on_hand[dest] += quantity
            self.forget_expired(source)
            self.forget_expired(dest)

    @rule(target=reservations, code=st.sampled_from(LOCATIONS), quantity=quantities)
    def reserve(self, code: str, quantity: int) -> str:
        response = self.run(
            self.inv.post(
                "/reservations", {"sku": self.sku, "location": self.loc(code), "quantity": quantity}
            )
        )
        allowed = self.on_hand[code] - self.reserved_live(code) >= quantity
        assert response.status_code == (201 if allowed else 409), response.text
        if not allowed:
            return ""
        self.forget_expired(code)
        reservation_id = str(response.json()["reservation"]["id"])
        self.held[reservation_id] = [code, quantity, False]
        return reservation_id

    @rule(reservation_id=consumes(reservations), commit=st.booleans())
    def close(self, reservation_id: str, commit: bool) -> None:
        action = "commit" if commit else "release"
        if not reservation_id:
            return
        response = self.run(self.inv.post(f"/reservations/{reservation_id}/{action}", {}))
        entry = self.held.get(reservation_id)
        if entry is None or entry[2]:
            assert response.status_code == 409, response.text
            return
        assert response.status_code == 200, response.text
        code, quantity, _ = self.held.pop(reservation_id)
        if commit:
            self.on_hand[code] -= quantity

    @rule(reservation_id=reservations)
    def expire(self, reservation_id: str) -> None:
        """Move one reservation's deadline into the past (the clock, not the rules, changes)."""
        if not reservation_id or reservation_id not in self.held:
            return
        self.run(
            self.world.owner.execute(
                "UPDATE reservation SET expires_at = now() - interval '1 second' "
                "WHERE id = $1 AND status = 'active'",
                reservation_id,
            )
        )
        self.held[reservation_id][2] = True

    @rule()
    def sweep(self) -> None:
        self.run(maintenance.sweep(self.world.app.state.services.sessionmaker))
        for code in LOCATIONS:
            self.forget_expired(code)

    @rule(batch=st.lists(operations, min_size=2, max_size=8))
    def concurrently(self, batch: list[tuple[Any, ...]]) -> None:
        """Every kind of writer at once: bulk, single movements, transfers, reservations,
        closes and the sweep, sent together. Which of them wins a race is up to the server;
        each answer must be a success or a clean 409, and the model then applies exactly the
        ones that succeeded (their effects commute), so the invariant below checks that the
        balances equal the ledger and the model after every batch."""
        open_ids = sorted(r for r, (_, _, expired) in self.held.items() if not expired)
        requests: list[tuple[tuple[Any, ...], Coroutine[Any, Any, httpx.Response | None]]] = []
        for operation in batch:
            if operation[0] == "close":
                if not open_ids:
                    continue
                _, index, commit = operation
                operation = ("close", open_ids.pop(index % len(open_ids)), commit)
            requests.append((operation, self.request(operation)))

        async def send_all() -> list[httpx.Response | None]:
            return list(await asyncio.gather(*(coro for _, coro in requests)))

        responses = self.run(send_all())
        touched: set[str] = set()
        swept = False
        for (operation, _), response in zip(requests, responses, strict=True):
            if operation[0] == "sweep":
                swept = True
                continue
            assert response is not None
            touched |= self.apply(operation, response)
        for code in LOCATIONS if swept else sorted(touched):
            self.forget_expired(code)

    def request(self, operation: tuple[Any, ...]) -> Coroutine[Any, Any, httpx.Response | None]:
        kind = operation[0]
        if kind in ("receipt", "issue", "adjustment"):
            _, code, quantity = operation
            return self.inv.move(self.sku, self.loc(code), kind, quantity)
        if kind == "transfer":
            _, source, dest, quantity = operation
            body = {
                "sku": self.sku,
                "from_location": self.loc(source),
                "to_location": self.loc(dest),
                "quantity": quantity,
            }
            return self.inv.post("/transfers", body)
        if kind == "reserve":
            _, code, quantity = operation
            body = {"sku": self.sku, "location": self.loc(code), "quantity": quantity}
            return self.inv.post("/reservations", body)
        if kind == "bulk":
            items = [
                {"sku": self.sku, "location": self.loc(code), "kind": move, "quantity": quantity}
                for code, move, quantity in operation[1]
            ]
            return self.inv.post("/movements/bulk", {"items": items})
        if kind == "close":
            _, reservation_id, commit = operation
            action = "commit" if commit else "release"
            return self.inv.post(f"/reservations/{reservation_id}/{action}", {})
        return self.swept()

    async def swept(self) -> None:
        await maintenance.sweep(self.world.app.state.services.sessionmaker)

    def apply(self, operation: tuple[Any, ...], response: httpx.Response) -> set[str]:
        """Fold one concurrent answer into the model; the balances it touched."""
        kind = operation[0]
        expected = {200} if kind == "close" else {201, 409}
        assert response.status_code in expected, (operation, response.text)
        if response.status_code == 409:
            return set()
        if kind in ("receipt", "issue", "adjustment"):
            _, code, quantity = operation
            self.on_hand[code] += -quantity if kind == "issue" else quantity
            return {code}
        if kind == "transfer":
            _, source, dest, quantity = operation
            self.on_hand[source] -= quantity
            self.on_hand[dest] += quantity
            return {source, dest}
        if kind == "reserve":
            _, code, quantity = operation
            self.held[str(response.json()["reservation"]["id"])] = [code, quantity, False]
            return {code}
        if kind == "bulk":
            for code, move, quantity in operation[1]:
                self.on_hand[code] += -quantity if move == "issue" else quantity
            return {code for code, _, _ in operation[1]}
        _, reservation_id, commit = operation
        code, quantity, _ = self.held.pop(reservation_id)
        if commit:
            self.on_hand[code] -= quantity
        return set()

    @invariant()
    def balances_match_ledger_and_model(self) -> None:
        rows = self.run(
            self.world.owner.fetch(
                """
            SELECT l.code, b.on_hand, b.reserved,
                   (SELECT coalesce(sum(delta), 0) FROM movement m
                     WHERE m.product_id = b.product_id AND m.location_id = b.location_id) AS ledger,
                   (SELECT coalesce(sum(quantity), 0) FROM reservation r
                     WHERE r.product_id = b.product_id AND r.location_id = b.location_id
                       AND r.status = 'active') AS held
            FROM balance b JOIN product p ON p.id = b.product_id
            JOIN location l ON l.id = b.location_id
            WHERE p.sku = $1 AND b.tenant_id = $2
            """,
                self.sku,
                self.world.tenant.id,
            )
        )
        for row in rows:
            code = row["code"].rsplit("-", 1)[1]
            assert row["on_hand"] == row["ledger"] == self.on_hand[code]
            assert row["reserved"] == row["held"] == self.reserved_held(code)


def test_ledger_state_machine(world: World) -> None:
    LedgerMachine.world = world
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
