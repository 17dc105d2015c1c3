"""The tenant's audit log (admins) and the support trace (platform staff)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from stockyard.audit import repository as audit_repository
from stockyard.audit import service as audit_service
from stockyard.audit.schemas import AuditEventRead, AuditPage, RequestTrace
from stockyard.auth.pipeline import READS_AUDIT, SupportPrincipal, SupportSession, TenantSession
from stockyard.core.pagination import Paging, instant_cursor
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.core.timestamps import Instant

router = APIRouter(prefix="/api/v1")
RequestIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


@router.get(
    "/audit",
    response_model=AuditPage,
    tags=["audit"],
    responses=error_responses(*AUTHENTICATED),
    dependencies=[READS_AUDIT],
)
async def list_audit_events(
    session: TenantSession,
    paging: Paging,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    actor_id: Annotated[uuid.UUID | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
) -> AuditPage:
    events = await audit_repository.list_events(
        session,
        request_id=request_id,
        actor_id=actor_id,
        action=action,
        since=since,
        until=until,
        before=instant_cursor(paging.cursor),
        limit=paging.fetch,
    )
    page, next_cursor = paging.cut(events, lambda e: (e.occurred_at.isoformat(), str(e.id)))
    return AuditPage(
        items=[AuditEventRead.model_validate(e) for e in page], next_cursor=next_cursor
    )


@router.get(
    "/support/requests/{request_id}",
    response_model=RequestTrace,
    tags=["support"],
    responses=error_responses(*AUTHENTICATED),
)
async def trace_request(
    request_id: RequestIdPath,
    session: SupportSession,
    staff: SupportPrincipal,
) -> RequestTrace:
    return await audit_service.request_trace(session, staff, request_id=request_id)
