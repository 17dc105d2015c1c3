"""The catalogue: products and locations, versioned and archived rather than deleted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core import audit_trail
from stockyard.core.database import TenantReads, insert_unique, save_new_version
from stockyard.core.errors import Conflict, PreconditionFailed
from stockyard.core.principal import AccessClaims
from stockyard.events import service as events_service
from stockyard.events.schemas import EventType
from stockyard.inventory.catalogue import repository as catalogue_repository
from stockyard.inventory.exceptions import CodeTaken, LocationNotFound, ProductNotFound, SkuTaken
from stockyard.inventory.models import Location, Product
from stockyard.inventory.schemas import (
    LocationCreate,
    LocationRead,
    LocationUpdate,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)


async def _announce(
    session: AsyncSession, principal: AccessClaims, event_type: EventType, item: BaseModel
) -> None:
    """A catalogue event carries the item as the API shows it."""
    await events_service.publish(
        session, principal.tenant_id, [(event_type, item.model_dump(mode="json"))]
    )


async def create_product(
    session: AsyncSession, principal: AccessClaims, *, body: ProductCreate
) -> Product:
    """A new product; its SKU is unique within the tenant (409 otherwise)."""
    product = Product(tenant_id=principal.tenant_id, id=uuid.uuid4(), **body.model_dump())
    await insert_unique(session, product, taken=SkuTaken())
    await session.refresh(product)
    await audit_trail.record(
        session,
        principal,
        action="product.create",
        resource_type="product",
        resource_id=product.id,
        status=201,
        details={"sku": product.sku},
    )
    await _announce(
        session, principal, EventType.PRODUCT_CREATED, ProductRead.model_validate(product)
    )
    return product


async def get_product(session: AsyncSession, *, product_id: uuid.UUID) -> Product:
    product = await catalogue_repository.get_product(session, product_id)
    if product is None:
        raise ProductNotFound()
    return product


async def read_product(reads: TenantReads, *, product_id: uuid.UUID) -> ProductRead:
    """A product as the API shows it (another tenant's id is not found, as everywhere)."""
    product = await catalogue_repository.read_product(reads, product_id)
    if product is None:
        raise ProductNotFound()
    return product


async def list_products(
    session: AsyncSession,
    *,
    q: str | None,
    archived: bool | None,
    after_sku: str | None,
    limit: int,
) -> list[Product]:
    return await catalogue_repository.list_products(
        session, q=q, archived=archived, after_sku=after_sku, limit=limit
    )


async def update_product(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    product_id: uuid.UUID,
    version: int,
    body: ProductUpdate,
) -> Product:
    """Change the fields sent, only if the caller saw the current version."""
    product = await get_product(session, product_id=product_id)
    if product.version != version:
        raise PreconditionFailed()
    for field, value in body.model_dump(exclude_unset=True).items():
        if value is not None or field in {"description", "reorder_point"}:
            setattr(product, field, value)
    await save_new_version(session, product)
    await audit_trail.record(
        session,
        principal,
        action="product.update",
        resource_type="product",
        resource_id=product.id,
        status=200,
        details={"changed": sorted(body.model_fields_set)},
    )
    await _announce(
        session, principal, EventType.PRODUCT_UPDATED, ProductRead.model_validate(product)
    )
    return product


async def archive_product(
    session: AsyncSession, principal: AccessClaims, *, product_id: uuid.UUID
) -> None:
    """DELETE archives: the ledger keeps pointing at the product, new movements are refused."""
    product = await get_product(session, product_id=product_id)
    if product.archived_at is None:
        product.archived_at = datetime.now(UTC)
        await save_new_version(
            session,
            product,
            at=product.archived_at,
            stale=Conflict("The product changed while it was being archived; retry."),
        )
        await audit_trail.record(
            session,
            principal,
            action="product.archive",
            resource_type="product",
            resource_id=product.id,
            status=204,
        )
        await _announce(
            session, principal, EventType.PRODUCT_ARCHIVED, ProductRead.model_validate(product)
        )


async def create_location(
    session: AsyncSession, principal: AccessClaims, *, body: LocationCreate
) -> Location:
    """A new location; its code is unique within the tenant (409 otherwise)."""
    location = Location(tenant_id=principal.tenant_id, id=uuid.uuid4(), **body.model_dump())
    await insert_unique(session, location, taken=CodeTaken())
    await session.refresh(location)
    await audit_trail.record(
        session,
        principal,
        action="location.create",
        resource_type="location",
        resource_id=location.id,
        status=201,
        details={"code": location.code},
    )
    await _announce(
        session, principal, EventType.LOCATION_CREATED, LocationRead.model_validate(location)
    )
    return location


async def get_location(session: AsyncSession, *, location_id: uuid.UUID) -> Location:
    location = await catalogue_repository.get_location(session, location_id)
    if location is None:
        raise LocationNotFound()
    return location


async def list_locations(
    session: AsyncSession,
    *,
    q: str | None,
    archived: bool | None,
    after_code: str | None,
    limit: int,
) -> list[Location]:
    return await catalogue_repository.list_locations(
        session, q=q, archived=archived, after_code=after_code, limit=limit
    )


async def update_location(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    location_id: uuid.UUID,
    version: int,
    body: LocationUpdate,
) -> Location:
    """Rename a location, only if the caller saw the current version."""
    location = await get_location(session, location_id=location_id)
    if location.version != version:
        raise PreconditionFailed()
    if body.name is not None:
        location.name = body.name
    await save_new_version(session, location)
    await audit_trail.record(
        session,
        principal,
        action="location.update",
        resource_type="location",
        resource_id=location.id,
        status=200,
    )
    await _announce(
        session, principal, EventType.LOCATION_UPDATED, LocationRead.model_validate(location)
    )
    return location


async def archive_location(
    session: AsyncSession, principal: AccessClaims, *, location_id: uuid.UUID
) -> None:
    """DELETE archives: history stays, new movements into or out of it are refused."""
    location = await get_location(session, location_id=location_id)
    if location.archived_at is None:
        location.archived_at = datetime.now(UTC)
        await save_new_version(
            session,
            location,
            at=location.archived_at,
            stale=Conflict("The location changed while it was being archived; retry."),
        )
        await audit_trail.record(
            session,
            principal,
            action="location.archive",
            resource_type="location",
            resource_id=location.id,
            status=204,
        )
        await _announce(
            session, principal, EventType.LOCATION_ARCHIVED, LocationRead.model_validate(location)
        )
