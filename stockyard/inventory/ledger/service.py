"""The ledger's rules: every stock change is a movement plus one guarded balance statement,
in the request's one transaction; nothing here ever reads a balance and writes it back."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core import audit_trail
from stockyard.core.database import Reads, Writes
from stockyard.core.ids import new_id, new_ids
from stockyard.core.principal import AccessClaims
from stockyard.events import service as events_service
from stockyard.events.schemas import EventType
from stockyard.inventory.catalogue import repository as catalogue_repository
from stockyard.inventory.catalogue.repository import LocationRef, ProductRef
from stockyard.inventory.exceptions import (
    Archived,
    BulkItemsInvalid,
    InsufficientStock,
    LocationNotFound,
    ProductNotFound,
    SameLocation,
)
from stockyard.inventory.ledger import bulk_repository
from stockyard.inventory.ledger import repository as ledger_repository
from stockyard.inventory.ledger.repository import BalanceRow, MovementFilter, StockFilter
from stockyard.inventory.models import Movement
from stockyard.inventory.schemas import (
    BalanceRead,
    BulkMovements,
    MovementCreate,
    MovementKind,
    MovementRead,
    MovementResult,
    StockItem,
    TransferCreate,
    TransferRead,
)


def balance_read(sku: str, location: str, balance: BalanceRow) -> BalanceRead:
    return BalanceRead(
        sku=sku,
        location=location,
        on_hand=balance.on_hand,
        reserved=balance.reserved,
        available=balance.on_hand - balance.reserved,
    )


def movement_read(movement: Movement, sku: str, location: str) -> MovementRead:
    return MovementRead(
        id=movement.id,
        sku=sku,
        location=location,
        product_id=movement.product_id,
        location_id=movement.location_id,
        delta=movement.delta,
        kind=movement.kind,
        reason=movement.reason,
        reference=movement.reference,
        occurred_at=movement.occurred_at,
        recorded_at=movement.recorded_at,
        request_id=movement.request_id,
        actor_id=movement.actor_id,
        transfer_id=movement.transfer_id,
    )


def _level(available: int, reorder_point: int | None) -> EventType:
    if available <= 0:
        return EventType.STOCK_OUT
    if reorder_point is not None and available < reorder_point:
        return EventType.STOCK_LOW
    return EventType.STOCK_RESTOCKED


def _crossings(before: int, after: int, reorder_point: int | None) -> list[EventType]:
    """The threshold event of one change of `available`, if it moved the balance from one
    level to another: out (zero or below), low (below the reorder point), or restocked (at or
    above it; above zero when the product has none)."""
    level = _level(after, reorder_point)
    return [] if level == _level(before, reorder_point) else [level]


async def publish_stock_changes(session: Writes, tenant_id: uuid.UUID) -> None:
    """The transaction's stock events, written in it: one stock.changed per balance touched
    (its final state; `sequence` is the balance's version, which only ever grows, so a
    receiver can drop stale or reordered events), a threshold event where the change crossed
    the reorder point or zero, and reservation.expired for each reservation let go on the way.
    Every writer calls this before its transaction commits (a commit without it is refused)."""
    touched, expired = ledger_repository.take_changes(session)
    if not touched and not expired:
        return
    # The balances of expired reservations are read for their names even when their change
    # was announced already (bulk ingest writes its balances' events itself).
    keys = list(touched) + list({(r.product_id, r.location_id) for r in expired} - touched.keys())
    rows = await ledger_repository.current_balances(session, keys)
    events: list[tuple[EventType, dict[str, Any]]] = []
    names: dict[tuple[uuid.UUID, uuid.UUID], tuple[str, str]] = {}
    for row in rows:
        key = (row["product_id"], row["location_id"])
        names[key] = (row["sku"], row["location"])
        touch = touched.get(key)
        if touch is None:
            continue
        available = row["on_hand"] - row["reserved"]
        state = {
            "sku": row["sku"],
            "location": row["location"],
            "product_id": str(row["product_id"]),
            "location_id": str(row["location_id"]),
            "on_hand": row["on_hand"],
            "reserved": row["reserved"],
            "available": available,
            "reorder_point": row["reorder_point"],
            "sequence": row["version"],
        }
        events.append(
            (
                EventType.STOCK_CHANGED,
                {
                    **state,
                    "movement_ids": [
                        str(i)
                        for i in touch.movement_ids[: ledger_repository.MAX_EVENT_MOVEMENT_IDS]
                    ],
                    "movement_count": len(touch.movement_ids),
                },
            )
        )
        before = available - touch.available_change
        events += [
            (crossing, {**state, "previous_available": before})
            for crossing in _crossings(before, available, row["reorder_point"])
        ]
    for reservation in expired:
        sku, location = names[(reservation.product_id, reservation.location_id)]
        events.append(
            (
                EventType.RESERVATION_EXPIRED,
                {
                    "id": str(reservation.id),
                    "sku": sku,
                    "location": location,
                    "quantity": reservation.quantity,
                    "reference": reservation.reference,
                    "status": "expired",
                },
            )
        )
    await events_service.publish(session, tenant_id, events)


def _movable_product(product: ProductRef | None, sku: str) -> ProductRef:
    if product is None:
        raise ProductNotFound(f"No product with SKU {sku!r}.")
    if product.archived_at is not None:
        raise Archived(f"Product {sku!r} is archived.")
    return product


def _movable_location(location: LocationRef | None, code: str) -> LocationRef:
    if location is None:
        raise LocationNotFound(f"No location with code {code!r}.")
    if location.archived_at is not None:
        raise Archived(f"Location {code!r} is archived.")
    return location


async def product_and_location(
    session: Writes, sku: str, code: str
) -> tuple[ProductRef, LocationRef]:
    """The product and location a movement or reservation names, in one round trip; the
    product is checked first, as when they were looked up one after the other."""
    product, location = await catalogue_repository.find_product_and_location(session, sku, code)
    return _movable_product(product, sku), _movable_location(location, code)


async def location_by_code(session: Writes, code: str) -> LocationRef:
    location = await catalogue_repository.find_location_by_code(session, code)
    return _movable_location(location, code)


def new_movement(
    principal: AccessClaims,
    *,
    product_id: uuid.UUID,
    location_id: uuid.UUID,
    delta: int,
    kind: str,
    request_id: str | None,
    occurred_at: datetime | None = None,
    reason: str | None = None,
    reference: str | None = None,
    transfer_id: uuid.UUID | None = None,
) -> Movement:
    now = datetime.now(UTC)
    return Movement(
        tenant_id=principal.tenant_id,
        id=new_id(),
        product_id=product_id,
        location_id=location_id,
        delta=delta,
        kind=kind,
        reason=reason,
        reference=reference,
        occurred_at=occurred_at or now,
        recorded_at=now,
        request_id=request_id,
        actor_id=principal.subject,
        transfer_id=transfer_id,
    )


async def _change(
    session: Writes,
    principal: AccessClaims,
    *,
    product: ProductRef,
    location: LocationRef,
    delta: int,
) -> BalanceRow:
    """Apply `delta` to one balance, letting its overdue reservations go on the way (lazy
    expiry). The change is tried first: a balance that holds nothing (`reserved` 0 after the
    change) has no reservation to let go, which spares most changes a statement. Where
    something is held, the overdue holds are let go after a change that succeeded (under
    the row lock the change took: balance first, then its reservations, the one lock
    order), or before the change is tried again when it was refused, since what they free
    may be what it lacked."""

    async def apply() -> BalanceRow | None:
        return await ledger_repository.apply_delta(
            session,
            tenant_id=principal.tenant_id,
            product_id=product.id,
            location_id=location.id,
            delta=delta,
        )

    balance = await apply()
    if balance is None:
        if await ledger_repository.expire_reservations_of(session, product.id, location.id):
            balance = await apply()
        if balance is None:
            raise InsufficientStock(details={"sku": product.sku, "location": location.code})
    elif balance.reserved > 0:
        released = await ledger_repository.expire_reservations_of(session, product.id, location.id)
        if released:
            # The expiry gave `released` back to this row in one more version.
            balance = dataclasses.replace(
                balance, reserved=balance.reserved - released, version=balance.version + 1
            )
    return balance


async def record_movement(
    session: Writes,
    principal: AccessClaims,
    *,
    body: MovementCreate,
    request_id: str | None,
) -> MovementResult:
    """Receipt, issue or adjustment: on_hand may never fall below what is reserved."""
    product, location = await product_and_location(session, body.sku, body.location)
    balance = await _change(
        session, principal, product=product, location=location, delta=body.delta
    )
    movement = new_movement(
        principal,
        product_id=product.id,
        location_id=location.id,
        delta=body.delta,
        kind=body.kind,
        request_id=request_id,
        occurred_at=body.occurred_at,
        reason=body.reason,
        reference=body.reference,
    )
    await ledger_repository.add_movements(session, [movement])
    await audit_trail.record(
        session,
        principal,
        action="movement.create",
        resource_type="movement",
        resource_id=movement.id,
        status=201,
        details={"sku": product.sku, "location": location.code, "delta": body.delta},
    )
    await publish_stock_changes(session, principal.tenant_id)
    return MovementResult(
        movement=movement_read(movement, product.sku, location.code),
        balance=balance_read(product.sku, location.code, balance),
    )


async def transfer(
    session: Writes,
    principal: AccessClaims,
    *,
    body: TransferCreate,
    request_id: str | None,
) -> TransferRead:
    """Move stock between two locations: two movements, two balances, one transaction.
    The balances are changed in location-id order, so opposite transfers lock in the same
    order and can't deadlock."""
    if body.from_location == body.to_location:
        raise SameLocation()
    product, source = await product_and_location(session, body.sku, body.from_location)
    target = await location_by_code(session, body.to_location)
    transfer_id = uuid.uuid4()
    legs = sorted([(source, -body.quantity), (target, body.quantity)], key=lambda leg: leg[0].id)
    balances: dict[uuid.UUID, BalanceRow] = {}
    for location, delta in legs:
        balances[location.id] = await _change(
            session, principal, product=product, location=location, delta=delta
        )
    movements = [
        new_movement(
            principal,
            product_id=product.id,
            location_id=location.id,
            delta=delta,
            kind=MovementKind.TRANSFER_OUT if delta < 0 else MovementKind.TRANSFER_IN,
            request_id=request_id,
            reference=body.reference,
            transfer_id=transfer_id,
        )
        for location, delta in ((source, -body.quantity), (target, body.quantity))
    ]
    await ledger_repository.add_movements(session, movements)
    await audit_trail.record(
        session,
        principal,
        action="transfer.create",
        resource_type="transfer",
        resource_id=transfer_id,
        status=201,
        details={
            "sku": product.sku,
            "from": source.code,
            "to": target.code,
            "quantity": body.quantity,
        },
    )
    await publish_stock_changes(session, principal.tenant_id)
    return TransferRead(
        transfer_id=transfer_id,
        movements=[
            movement_read(movement, product.sku, location.code)
            for movement, location in zip(movements, (source, target), strict=True)
        ],
        balances=[
            balance_read(product.sku, location.code, balances[location.id])
            for location in (source, target)
        ],
    )


def takes_stock(rows: Sequence[bulk_repository.StagedMovement]) -> bool:
    """Whether the batch's net change of some balance is negative. SKUs and location codes
    name their rows exactly (staging joins on them as they are), so they key the balances."""
    if all(row[5] >= 0 for row in rows):
        return False
    nets: dict[tuple[str, str], int] = {}
    for _, _, sku, location, _, delta, *_ in rows:
        nets[sku, location] = nets.get((sku, location), 0) + delta
    return any(net < 0 for net in nets.values())


async def ingest(
    session: Writes,
    principal: AccessClaims,
    *,
    body: BulkMovements,
    request_id: str | None,
) -> int:
    """Up to 10,000 movements, all or nothing. Each balance must end the batch covering its
    reservations; the items at fault are named (by index) when one does not."""
    rows = [
        (
            index,
            movement_id,
            item.sku,
            item.location,
            item.kind,
            item.delta,
            item.reason,
            item.reference,
            item.occurred_at,
        )
        for (index, item), movement_id in zip(
            enumerate(body.items), new_ids(len(body.items)), strict=True
        )
    ]
    problems = await bulk_repository.stage(session, rows)
    if problems:
        raise BulkItemsInvalid(
            details={"items": [{"index": p.index, "reason": p.reason} for p in problems]}
        )
    short = await bulk_repository.apply(
        session,
        tenant_id=principal.tenant_id,
        request_id=request_id,
        actor_id=principal.subject,
        takes_stock=takes_stock(rows),
    )
    if short:
        raise InsufficientStock(
            "Some balances would fall below what is reserved.",
            details={"items": [{"index": p.index, "reason": p.reason} for p in short]},
        )
    await audit_trail.record(
        session,
        principal,
        action="movement.bulk",
        resource_type="movement",
        status=201,
        details={"inserted": len(rows)},
    )
    await publish_stock_changes(session, principal.tenant_id)
    return len(rows)


async def history(
    reads: Reads,
    *,
    sku: str | None,
    location: str | None,
    kind: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[MovementRead]:
    """The ledger, oldest first; an unknown SKU or location code is an empty history."""
    return await ledger_repository.history(
        reads, where=MovementFilter(sku, location, kind, start, end), after=after, limit=limit
    )


async def history_documents(
    reads: Reads,
    *,
    sku: str | None,
    location: str | None,
    kind: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """`history` rendered by the database (core/rendering.py): (occurred_at, id, document)."""
    return await ledger_repository.history_documents(
        reads, where=MovementFilter(sku, location, kind, start, end), after=after, limit=limit
    )


async def stock_documents(
    reads: Reads,
    *,
    sku: str | None,
    location: str | None,
    below_reorder_point: bool,
    after: tuple[str, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """`stock` rendered by the database (core/rendering.py): (sku, location, document)."""
    return await ledger_repository.stock_documents(
        reads, where=StockFilter(sku, location, below_reorder_point), after=after, limit=limit
    )


async def stock(
    reads: Reads,
    *,
    sku: str | None,
    location: str | None,
    below_reorder_point: bool,
    after: tuple[str, str] | None,
    limit: int,
) -> list[StockItem]:
    rows = await stock_of_products(
        reads,
        sku=sku,
        location=location,
        below_reorder_point=below_reorder_point,
        after=after,
        limit=limit,
    )
    return [item for item, _ in rows]


async def stock_of_products(
    reads: Reads,
    *,
    sku: str | None,
    location: str | None,
    below_reorder_point: bool,
    after: tuple[str, str] | None,
    limit: int,
    sku_prefix: str | None = None,
) -> list[tuple[StockItem, uuid.UUID]]:
    """Stock rows with the id of each row's product (the console links to its page)."""
    rows = await ledger_repository.stock(
        reads,
        where=StockFilter(sku, location, below_reorder_point, sku_prefix),
        after=after,
        limit=limit,
    )
    return [
        (
            StockItem(
                sku=row["sku"],
                location=row["location"],
                on_hand=row["on_hand"],
                reserved=row["reserved"],
                available=row["on_hand"] - row["reserved"],
                reorder_point=row["reorder_point"],
            ),
            row["product_id"],
        )
        for row in rows
    ]


async def stock_levels(
    session: AsyncSession, *, product_id: uuid.UUID, since: datetime, buckets: int
) -> list[tuple[datetime, int]]:
    """A product's on-hand total over time, all locations together: (instant, level) points
    from `since` to now (and any future-dated movement), in `buckets` steps. Computed back
    from today's balances, so the ledger is read only for the window."""
    now = datetime.now(UTC)
    step = max((now - since) / buckets, timedelta(seconds=1))
    nets = await ledger_repository.net_change_by_bucket(
        session, product_id=product_id, since=since, step=step
    )
    level = await ledger_repository.on_hand_total(session, product_id)
    points: list[tuple[datetime, int]] = []
    for bucket, net in reversed(nets):
        points.append((max(bucket + step, since), level))
        level -= net
    points.append((since, level))
    points.reverse()
    if points[-1][0] < now:
        points.append((now, points[-1][1]))
    return points
