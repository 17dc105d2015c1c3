"""Reservations: stock held for a while, then committed (it leaves as a movement) or released.
Never more reserved than on hand; expiry gives held stock back, lazily and by the sweep."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core import audit_trail
from stockyard.core.principal import AccessClaims
from stockyard.events import service as events_service
from stockyard.events.schemas import EventType
from stockyard.inventory.exceptions import InsufficientStock, ReservationClosed, ReservationNotFound
from stockyard.inventory.ledger import repository as ledger_repository
from stockyard.inventory.ledger.service import (
    balance_read,
    movement_read,
    new_movement,
    product_and_location,
    publish_stock_changes,
)
from stockyard.inventory.models import Reservation
from stockyard.inventory.reservations import repository as reservation_repository
from stockyard.inventory.schemas import (
    MovementKind,
    MovementRead,
    ReservationCreate,
    ReservationRead,
    ReservationResult,
    ReservationStatus,
)


def reservation_read(reservation: Reservation, sku: str, location: str) -> ReservationRead:
    return ReservationRead(
        id=reservation.id,
        sku=sku,
        location=location,
        quantity=reservation.quantity,
        status=reservation.status,
        expires_at=reservation.expires_at,
        reference=reservation.reference,
        created_at=reservation.created_at,
        updated_at=reservation.updated_at,
    )


async def reserve(
    session: AsyncSession, principal: AccessClaims, *, body: ReservationCreate
) -> ReservationResult:
    """Hold stock for a while: never more reserved than on hand."""
    product, location = await product_and_location(session, body.sku, body.location)
    await ledger_repository.expire_reservations_of(session, product.id, location.id)
    balance = await ledger_repository.reserve(
        session, product_id=product.id, location_id=location.id, quantity=body.quantity
    )
    if balance is None:
        raise InsufficientStock(
            "Not enough available stock to reserve.",
            details={"sku": product.sku, "location": location.code},
        )
    now = datetime.now(UTC)
    reservation = Reservation(
        tenant_id=principal.tenant_id,
        id=uuid.uuid4(),
        product_id=product.id,
        location_id=location.id,
        quantity=body.quantity,
        status=ReservationStatus.ACTIVE,
        expires_at=now + timedelta(seconds=body.expires_in_seconds),
        reference=body.reference,
        created_at=now,
        updated_at=now,
    )
    await reservation_repository.add_reservation(session, reservation)
    await audit_trail.record(
        session,
        principal,
        action="reservation.create",
        resource_type="reservation",
        resource_id=reservation.id,
        status=201,
        details={"sku": product.sku, "location": location.code, "quantity": body.quantity},
    )
    result = ReservationResult(
        reservation=reservation_read(reservation, product.sku, location.code),
        balance=balance_read(product.sku, location.code, balance),
    )
    await events_service.publish(
        session,
        principal.tenant_id,
        [(EventType.RESERVATION_CREATED, result.reservation.model_dump(mode="json"))],
    )
    await publish_stock_changes(session, principal.tenant_id)
    return result


async def _close(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    reservation_id: uuid.UUID,
    commit: bool,
    request_id: str | None,
) -> ReservationResult:
    found = await reservation_repository.get_reservation(session, reservation_id)
    if found is None:
        raise ReservationNotFound()
    unlocked, sku, code = found
    reservation = await ledger_repository.lock_reservation(session, unlocked)
    now = datetime.now(UTC)
    if reservation.status == ReservationStatus.ACTIVE and reservation.expires_at <= now:
        raise ReservationClosed(
            "The reservation has expired.", details={"status": ReservationStatus.EXPIRED}
        )
    if reservation.status != ReservationStatus.ACTIVE:
        raise ReservationClosed(details={"status": reservation.status})
    balance = await ledger_repository.unreserve(
        session,
        product_id=reservation.product_id,
        location_id=reservation.location_id,
        quantity=reservation.quantity,
        consume=commit,
    )
    reservation.status = ReservationStatus.COMMITTED if commit else ReservationStatus.RELEASED
    reservation.updated_at = now
    movement_out: MovementRead | None = None
    if commit:
        movement = new_movement(
            principal,
            product_id=reservation.product_id,
            location_id=reservation.location_id,
            delta=-reservation.quantity,
            kind=MovementKind.RESERVATION_COMMIT,
            request_id=request_id,
            occurred_at=now,
            reference=reservation.reference,
        )
        await ledger_repository.add_movements(session, [movement])
        movement_out = movement_read(movement, sku, code)
    await session.flush()
    await audit_trail.record(
        session,
        principal,
        action=f"reservation.{'commit' if commit else 'release'}",
        resource_type="reservation",
        resource_id=reservation.id,
        status=200,
    )
    result = ReservationResult(
        reservation=reservation_read(reservation, sku, code),
        balance=balance_read(sku, code, balance),
        movement=movement_out,
    )
    closed = EventType.RESERVATION_COMMITTED if commit else EventType.RESERVATION_RELEASED
    await events_service.publish(
        session, principal.tenant_id, [(closed, result.reservation.model_dump(mode="json"))]
    )
    await publish_stock_changes(session, principal.tenant_id)
    return result


async def commit_reservation(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    reservation_id: uuid.UUID,
    request_id: str | None,
) -> ReservationResult:
    """The held stock leaves: an issue movement (kind reservation_commit) for the quantity."""
    return await _close(
        session, principal, reservation_id=reservation_id, commit=True, request_id=request_id
    )


async def release_reservation(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    reservation_id: uuid.UUID,
) -> ReservationResult:
    """The held stock becomes available again."""
    return await _close(
        session, principal, reservation_id=reservation_id, commit=False, request_id=None
    )


async def get_reservation(session: AsyncSession, *, reservation_id: uuid.UUID) -> ReservationRead:
    found = await reservation_repository.get_reservation(session, reservation_id)
    if found is None:
        raise ReservationNotFound()
    reservation, sku, code = found
    return reservation_read(reservation, sku, code)


async def list_reservations(
    session: AsyncSession,
    *,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ReservationRead]:
    rows = await reservation_repository.list_reservations(
        session, status=status, after=after, limit=limit
    )
    return [reservation_read(reservation, sku, code) for reservation, sku, code in rows]
