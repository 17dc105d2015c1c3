"""All SQL of the product and location catalogue (inside the tenant context)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.database import TenantReads, Writes, fetch, fetch_one
from stockyard.inventory.models import Location, Product
from stockyard.inventory.schemas import ProductRead


def prefix_pattern(prefix: str) -> str:
    """A LIKE pattern matching what starts with `prefix` (its wildcards taken literally)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def get_product(session: AsyncSession, product_id: uuid.UUID) -> Product | None:
    return await session.scalar(select(Product).where(Product.id == product_id))


# A read by id is the hottest route there is: the driver runs it (see core/database.fetch),
# through the function that scopes it to the tenant itself (migration 0012), one round trip.
_READ_PRODUCT = (
    f"SELECT {', '.join(ProductRead.model_fields)} "
    "FROM stockyard_product_in_tenant(:tenant_id, :product_id)"
)


async def read_product(reads: TenantReads, product_id: uuid.UUID) -> ProductRead | None:
    row = await reads.fetch_one_self_scoped(
        _READ_PRODUCT, {"tenant_id": reads.tenant_id, "product_id": product_id}
    )
    return None if row is None else ProductRead.model_validate(dict(row))


@dataclass(frozen=True, slots=True)
class ProductRef:
    """What the ledger needs of a product it is about to move."""

    id: uuid.UUID
    sku: str
    archived_at: datetime | None


@dataclass(frozen=True, slots=True)
class LocationRef:
    id: uuid.UUID
    code: str
    archived_at: datetime | None


# Every movement, transfer and reservation starts by looking up what it names, on the driver: a
# product and a location in one round trip (each a left join on its unique key, so either may
# be missing).
_PRODUCT_AND_LOCATION = """
    SELECT p.id AS product_id, p.sku, p.archived_at AS product_archived_at,
           l.id AS location_id, l.code, l.archived_at AS location_archived_at
    FROM (VALUES (1)) AS one (n)
    LEFT JOIN product p ON p.sku = :sku
    LEFT JOIN location l ON l.code = :code
"""


async def find_product_and_location(
    session: Writes, sku: str, code: str
) -> tuple[ProductRef | None, LocationRef | None]:
    (row,) = await fetch(session, _PRODUCT_AND_LOCATION, {"sku": sku, "code": code})
    product = (
        None
        if row["product_id"] is None
        else ProductRef(row["product_id"], row["sku"], row["product_archived_at"])
    )
    location = (
        None
        if row["location_id"] is None
        else LocationRef(row["location_id"], row["code"], row["location_archived_at"])
    )
    return product, location


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
        pattern = prefix_pattern(q)
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


async def find_location_by_code(session: Writes, code: str) -> LocationRef | None:
    row = await fetch_one(
        session, "SELECT id, code, archived_at FROM location WHERE code = :code", {"code": code}
    )
    return None if row is None else LocationRef(row["id"], row["code"], row["archived_at"])


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
        pattern = prefix_pattern(q)
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
