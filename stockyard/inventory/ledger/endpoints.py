"""Movements, bulk ingest, history, transfers and stock."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from stockyard.auth.pipeline import InventoryReads, InventoryWrites
from stockyard.core.dependencies import RequestId
from stockyard.core.pagination import Paging, instant_cursor, text_pair_cursor
from stockyard.core.rendering import page_response
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.core.timestamps import Instant, instant_key
from stockyard.idempotency.dependencies import IdempotentWrite
from stockyard.inventory.ledger import service as ledger
from stockyard.inventory.schemas import (
    MAX_BULK_BODY_BYTES,
    BulkMovements,
    BulkResult,
    MovementCreate,
    MovementKind,
    MovementPage,
    MovementResult,
    StockPage,
    TransferCreate,
    TransferRead,
)

router = APIRouter(prefix="/api/v1", tags=["ledger"])

WRITE = error_responses(*AUTHENTICATED, 404, 409)
READ = error_responses(*AUTHENTICATED)


@router.post("/movements", status_code=201, response_model=MovementResult, responses=WRITE)
async def record_movement(
    body: MovementCreate,
    writer: InventoryWrites,
    request_id: RequestId,
    once: IdempotentWrite,
) -> JSONResponse:
    async def run() -> MovementResult:
        return await ledger.record_movement(
            writer.session, writer.principal, body=body, request_id=request_id
        )

    return await once.respond(body, run)


@router.post(
    "/movements/bulk",
    status_code=201,
    response_model=BulkResult,
    responses=error_responses(*AUTHENTICATED, 409, 413),
    max_body_size=MAX_BULK_BODY_BYTES,
)
async def ingest_movements(
    body: BulkMovements,
    writer: InventoryWrites,
    request_id: RequestId,
    once: IdempotentWrite,
) -> JSONResponse:
    async def run() -> BulkResult:
        inserted = await ledger.ingest(
            writer.session, writer.principal, body=body, request_id=request_id
        )
        return BulkResult(inserted=inserted)

    return await once.respond(body, run)


@router.get("/movements", response_model=MovementPage, responses=READ)
async def list_movements(
    reads: InventoryReads,
    paging: Paging,
    sku: Annotated[str | None, Query(max_length=100)] = None,
    location: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[MovementKind | None, Query()] = None,
    start: Annotated[Instant | None, Query(description="occurred_at >= start")] = None,
    end: Annotated[Instant | None, Query(description="occurred_at < end")] = None,
) -> Response:
    rows = await ledger.history_documents(
        reads,
        sku=sku,
        location=location,
        kind=kind,
        start=start,
        end=end,
        after=instant_cursor(paging.cursor),
        limit=paging.fetch,
    )
    return page_response(
        paging, rows, lambda row: (instant_key(row["occurred_at"]), str(row["id"]))
    )


@router.post("/transfers", status_code=201, response_model=TransferRead, responses=WRITE)
async def create_transfer(
    body: TransferCreate,
    writer: InventoryWrites,
    request_id: RequestId,
    once: IdempotentWrite,
) -> JSONResponse:
    async def run() -> TransferRead:
        return await ledger.transfer(
            writer.session, writer.principal, body=body, request_id=request_id
        )

    return await once.respond(body, run)


@router.get("/stock", response_model=StockPage, responses=READ)
async def read_stock(
    reads: InventoryReads,
    paging: Paging,
    sku: Annotated[str | None, Query(max_length=100)] = None,
    location: Annotated[str | None, Query(max_length=64)] = None,
    below_reorder_point: Annotated[bool, Query()] = False,
) -> Response:
    rows = await ledger.stock_documents(
        reads,
        sku=sku,
        location=location,
        below_reorder_point=below_reorder_point,
        after=text_pair_cursor(paging.cursor),
        limit=paging.fetch,
    )
    return page_response(paging, rows, lambda row: (row["sku"], row["location"]))
