"""All SQL of the product and location catalogue (inside the tenant context)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.inventory.models import Location, Product


def _prefix_pattern(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def get_product(session: AsyncSession, product_id: uuid.UUID) -> Product | None:
    return await session.scalar(select(Product).where(Product.id == product_id))


async def get_product_by_sku(session: AsyncSession, sku: str) -> Product | None:
    return await session.scalar(select(Product).where(Product.sku == sku))


async def list_products(
    session: AsyncSession,
    *,
    q: str | None,
    archived: bool | None,
    after_sku: str | None,
    limit: int,
) -> list[Product]:
    statement = select(Product)
    if q:
        pattern = _prefix_pattern(q)
        statement = statement.where(
            or_(Product.sku.like(pattern), func.lower(Product.name).like(pattern.lower()))
        )
    if archived is not None:
        statement = statement.where(
            Product.archived_at.is_not(None) if archived else Product.archived_at.is_(None)
        )
    if after_sku is not None:
        statement = statement.where(Product.sku > after_sku)
    return list(await session.scalars(statement.order_by(Product.sku).limit(limit)))


async def get_location(session: AsyncSession, location_id: uuid.UUID) -> Location | None:
    return await session.scalar(select(Location).where(Location.id == location_id))


async def get_location_by_code(session: AsyncSession, code: str) -> Location | None:
    return await session.scalar(select(Location).where(Location.code == code))


async def list_locations(
    session: AsyncSession,
    *,
    q: str | None,
    archived: bool | None,
    after_code: str | None,
    limit: int,
) -> list[Location]:
    statement = select(Location)
    if q:
        pattern = _prefix_pattern(q)
        statement = statement.where(
            or_(Location.code.like(pattern), func.lower(Location.name).like(pattern.lower()))
        )
    if archived is not None:
        statement = statement.where(
            Location.archived_at.is_not(None) if archived else Location.archived_at.is_(None)
        )
    if after_code is not None:
        statement = statement.where(Location.code > after_code)
    return list(await session.scalars(statement.order_by(Location.code).limit(limit)))
