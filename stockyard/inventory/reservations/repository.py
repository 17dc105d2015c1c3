"""All SQL that reads or adds reservations; what they hold on a balance is changed by the
ledger's repository, under its lock order."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.inventory.models import Location, Product, Reservation


async def add_reservation(session: AsyncSession, reservation: Reservation) -> None:
    session.add(reservation)
    await session.flush()


async def get_reservation(
    session: AsyncSession, reservation_id: uuid.UUID
) -> tuple[Reservation, str, str] | None:
    """A reservation with its SKU and location code, unlocked."""
    statement = (
        select(Reservation, Product.sku, Location.code)
        .join(Product, Product.id == Reservation.product_id)
        .join(Location, Location.id == Reservation.location_id)
        .where(Reservation.id == reservation_id)
    )
    row = (await session.execute(statement)).first()
    return (row[0], row[1], row[2]) if row is not None else None


async def list_reservations(
    session: AsyncSession,
    *,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[tuple[Reservation, str, str]]:
    statement = (
        select(Reservation, Product.sku, Location.code)
        .join(Product, Product.id == Reservation.product_id)
        .join(Location, Location.id == Reservation.location_id)
    )
    if status is not None:
        statement = statement.where(Reservation.status == status)
    if after is not None:
        statement = statement.where(
            tuple_(Reservation.created_at, Reservation.id) > tuple_(after[0], after[1])
        )
    statement = statement.order_by(Reservation.created_at, Reservation.id).limit(limit)
    return [(reservation, sku, code) for reservation, sku, code in await session.execute(statement)]
