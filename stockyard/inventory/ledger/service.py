"""The ledger's rules: every stock change is a movement plus one guarded balance statement,
in the request's one transaction; nothing here ever reads a balance and writes it back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core import audit_trail
from stockyard.core.ids import new_id, new_ids
from stockyard.core.principal import AccessClaims
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
from stockyard.inventory.ledger.repository import BalanceRow, MovementFilter
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


async def product_by_sku(session: AsyncSession, sku: str) -> ProductRef:
    product = await catalogue_repository.find_product_by_sku(session, sku)
    if product is None:
        raise ProductNotFound(f"No product with SKU {sku!r}.")
    if product.archived_at is not None:
        raise Archived(f"Product {sku!r} is archived.")
    return product


async def location_by_code(session: AsyncSession, code: str) -> LocationRef:
    location = await catalogue_repository.find_location_by_code(session, code)
    if location is None:
        raise LocationNotFound(f"No location with code {code!r}.")
    if location.archived_at is not None:
        raise Archived(f"Location {code!r} is archived.")
    return location


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
    session: AsyncSession,
    principal: AccessClaims,
    *,
    product: ProductRef,
    location: LocationRef,
    delta: int,
) -> BalanceRow:
    await ledger_repository.expire_reservations_of(session, product.id, location.id)
    balance = await ledger_repository.apply_delta(
        session,
        tenant_id=principal.tenant_id,
        product_id=product.id,
        location_id=location.id,
        delta=delta,
    )
    if balance is None:
        raise InsufficientStock(details={"sku": product.sku, "location": location.code})
    return balance


async def record_movement(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    body: MovementCreate,
    request_id: str | None,
) -> MovementResult:
    """Receipt, issue or adjustment: on_hand may never fall below what is reserved."""
    product = await product_by_sku(session, body.sku)
    location = await location_by_code(session, body.location)
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
    return MovementResult(
        movement=movement_read(movement, product.sku, location.code),
        balance=balance_read(product.sku, location.code, balance),
    )


async def transfer(
    session: AsyncSession,
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
    product = await product_by_sku(session, body.sku)
    source = await location_by_code(session, body.from_location)
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


async def ingest(
    session: AsyncSession,
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
        session, tenant_id=principal.tenant_id, request_id=request_id, actor_id=principal.subject
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
    return len(rows)


async def history(
    session: AsyncSession,
    *,
    sku: str | None,
    location: str | None,
    kind: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[MovementRead]:
    product_id = location_id = None
    if sku is not None:
        product = await catalogue_repository.find_product_by_sku(session, sku)
        if product is None:
            return []
        product_id = product.id
    if location is not None:
        place = await catalogue_repository.find_location_by_code(session, location)
        if place is None:
            return []
        location_id = place.id
    rows = await ledger_repository.history(
        session,
        where=MovementFilter(product_id, location_id, kind, start, end),
        after=after,
        limit=limit,
    )
    return [movement_read(movement, sku_, code) for movement, sku_, code in rows]


async def stock(
    session: AsyncSession,
    *,
    sku: str | None,
    location: str | None,
    below_reorder_point: bool,
    after: tuple[str, str] | None,
    limit: int,
) -> list[StockItem]:
    rows = await ledger_repository.stock(
        session,
        sku=sku,
        location=location,
        below_reorder_point=below_reorder_point,
        after=after,
        limit=limit,
    )
    return [
        StockItem(
            sku=row["sku"],
            location=row["location"],
            on_hand=row["on_hand"],
            reserved=row["reserved"],
            available=row["on_hand"] - row["reserved"],
            reorder_point=row["reorder_point"],
        )
        for row in rows
    ]
