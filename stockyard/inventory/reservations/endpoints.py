"""Reservations: hold stock, then commit or release it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from stockyard.auth.pipeline import READS_INVENTORY, InventoryWriter, TenantSession
from stockyard.core.dependencies import RequestId
from stockyard.core.pagination import Paging, instant_cursor
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.idempotency.dependencies import Idempotent
from stockyard.inventory.reservations import service as reservation_service
from stockyard.inventory.schemas import (
    ReservationCreate,
    ReservationPage,
    ReservationRead,
    ReservationResult,
    ReservationStatus,
)

router = APIRouter(prefix="/api/v1", tags=["reservations"])

WRITE = error_responses(*AUTHENTICATED, 404, 409)
READ = error_responses(*AUTHENTICATED)


@router.post("/reservations", status_code=201, response_model=ReservationResult, responses=WRITE)
async def create_reservation(
    body: ReservationCreate,
    session: TenantSession,
    principal: InventoryWriter,
    once: Idempotent,
) -> JSONResponse:
    async def run() -> ReservationResult:
        return await reservation_service.reserve(session, principal, body=body)

    return await once.respond(body, run)


@router.get(
    "/reservations",
    response_model=ReservationPage,
    responses=READ,
    dependencies=[READS_INVENTORY],
)
async def list_reservations(
    session: TenantSession,
    paging: Paging,
    status: Annotated[ReservationStatus | None, Query()] = None,
) -> ReservationPage:
    reservations = await reservation_service.list_reservations(
        session, status=status, after=instant_cursor(paging.cursor), limit=paging.fetch
    )
    page, next_cursor = paging.cut(reservations, lambda r: (r.created_at.isoformat(), str(r.id)))
    return ReservationPage(items=page, next_cursor=next_cursor)


@router.get(
    "/reservations/{reservation_id}",
    response_model=ReservationRead,
    responses=error_responses(*AUTHENTICATED, 404),
    dependencies=[READS_INVENTORY],
)
async def get_reservation(reservation_id: uuid.UUID, session: TenantSession) -> ReservationRead:
    return await reservation_service.get_reservation(session, reservation_id=reservation_id)


@router.post(
    "/reservations/{reservation_id}/commit", response_model=ReservationResult, responses=WRITE
)
async def commit_reservation(
    reservation_id: uuid.UUID,
    session: TenantSession,
    principal: InventoryWriter,
    request_id: RequestId,
    once: Idempotent,
) -> JSONResponse:
    async def run() -> ReservationResult:
        return await reservation_service.commit_reservation(
            session, principal, reservation_id=reservation_id, request_id=request_id
        )

    return await once.respond(None, run, status_code=200)


@router.post(
    "/reservations/{reservation_id}/release", response_model=ReservationResult, responses=WRITE
)
async def release_reservation(
    reservation_id: uuid.UUID,
    session: TenantSession,
    principal: InventoryWriter,
    once: Idempotent,
) -> JSONResponse:
    async def run() -> ReservationResult:
        return await reservation_service.release_reservation(
            session, principal, reservation_id=reservation_id
        )

    return await once.respond(None, run, status_code=200)
