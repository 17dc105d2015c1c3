"""Products and locations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from stockyard.auth.pipeline import (
    READS_INVENTORY,
    InventoryReads,
    InventoryWriter,
    TenantSession,
)
from stockyard.core.pagination import Paging, text_cursor
from stockyard.core.preconditions import IfMatch, etag, expected_version
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.idempotency.dependencies import Idempotent
from stockyard.inventory.catalogue import service as catalogue_service
from stockyard.inventory.schemas import (
    LocationCreate,
    LocationPage,
    LocationRead,
    LocationUpdate,
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductUpdate,
)

router = APIRouter(prefix="/api/v1", tags=["catalogue"])

Prefix = Annotated[str | None, Query(max_length=100, description="SKU/code or name prefix.")]
ArchivedFilter = Annotated[bool | None, Query(description="Only archived (true) or live (false).")]
READ = error_responses(*AUTHENTICATED)
ITEM = error_responses(*AUTHENTICATED, 404)
CREATE = error_responses(*AUTHENTICATED, 409)
UPDATE = error_responses(*AUTHENTICATED, 404, 412, 428)


@router.post("/products", status_code=201, response_model=ProductRead, responses=CREATE)
async def create_product(
    body: ProductCreate,
    session: TenantSession,
    principal: InventoryWriter,
    once: Idempotent,
) -> JSONResponse:
    async def create() -> ProductRead:
        product = await catalogue_service.create_product(session, principal, body=body)
        return ProductRead.model_validate(product)

    return await once.respond(body, create, item_path="/api/v1/products/{id}")


@router.get(
    "/products",
    response_model=ProductPage,
    responses=READ,
    dependencies=[READS_INVENTORY],
)
async def list_products(
    session: TenantSession,
    paging: Paging,
    q: Prefix = None,
    archived: ArchivedFilter = None,
) -> ProductPage:
    products = await catalogue_service.list_products(
        session,
        q=q,
        archived=archived,
        after_sku=text_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(products, lambda p: (p.sku,))
    return ProductPage(items=[ProductRead.model_validate(p) for p in page], next_cursor=next_cursor)


@router.get("/products/{product_id}", response_model=ProductRead, responses=ITEM)
async def get_product(
    product_id: uuid.UUID, reads: InventoryReads, response: Response
) -> ProductRead:
    product = await catalogue_service.read_product(reads, product_id=product_id)
    response.headers["ETag"] = etag(product.version)
    return product


@router.patch("/products/{product_id}", response_model=ProductRead, responses=UPDATE)
async def update_product(
    product_id: uuid.UUID,
    body: ProductUpdate,
    session: TenantSession,
    principal: InventoryWriter,
    response: Response,
    if_match: IfMatch,
) -> ProductRead:
    product = await catalogue_service.update_product(
        session, principal, product_id=product_id, version=expected_version(if_match), body=body
    )
    response.headers["ETag"] = etag(product.version)
    return ProductRead.model_validate(product)


@router.delete("/products/{product_id}", status_code=204, responses=ITEM)
async def archive_product(
    product_id: uuid.UUID, session: TenantSession, principal: InventoryWriter
) -> None:
    await catalogue_service.archive_product(session, principal, product_id=product_id)


@router.post("/locations", status_code=201, response_model=LocationRead, responses=CREATE)
async def create_location(
    body: LocationCreate,
    session: TenantSession,
    principal: InventoryWriter,
    once: Idempotent,
) -> JSONResponse:
    async def create() -> LocationRead:
        location = await catalogue_service.create_location(session, principal, body=body)
        return LocationRead.model_validate(location)

    return await once.respond(body, create, item_path="/api/v1/locations/{id}")


@router.get(
    "/locations",
    response_model=LocationPage,
    responses=READ,
    dependencies=[READS_INVENTORY],
)
async def list_locations(
    session: TenantSession,
    paging: Paging,
    q: Prefix = None,
    archived: ArchivedFilter = None,
) -> LocationPage:
    locations = await catalogue_service.list_locations(
        session,
        q=q,
        archived=archived,
        after_code=text_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(locations, lambda loc: (loc.code,))
    return LocationPage(
        items=[LocationRead.model_validate(loc) for loc in page], next_cursor=next_cursor
    )


@router.get(
    "/locations/{location_id}",
    response_model=LocationRead,
    responses=ITEM,
    dependencies=[READS_INVENTORY],
)
async def get_location(
    location_id: uuid.UUID, session: TenantSession, response: Response
) -> LocationRead:
    location = await catalogue_service.get_location(session, location_id=location_id)
    response.headers["ETag"] = etag(location.version)
    return LocationRead.model_validate(location)


@router.patch("/locations/{location_id}", response_model=LocationRead, responses=UPDATE)
async def update_location(
    location_id: uuid.UUID,
    body: LocationUpdate,
    session: TenantSession,
    principal: InventoryWriter,
    response: Response,
    if_match: IfMatch,
) -> LocationRead:
    location = await catalogue_service.update_location(
        session, principal, location_id=location_id, version=expected_version(if_match), body=body
    )
    response.headers["ETag"] = etag(location.version)
    return LocationRead.model_validate(location)


@router.delete("/locations/{location_id}", status_code=204, responses=ITEM)
async def archive_location(
    location_id: uuid.UUID, session: TenantSession, principal: InventoryWriter
) -> None:
    await catalogue_service.archive_location(session, principal, location_id=location_id)
