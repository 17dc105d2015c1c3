"""GET /api/v1/tenant/export: everything the caller's tenant owns, streamed as a zip."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from stockyard.auth.limiter import LimiterDep
from stockyard.auth.pipeline import TenantSession, require
from stockyard.auth.scopes import Scope
from stockyard.core import audit_trail
from stockyard.core.dependencies import SessionmakerDep
from stockyard.core.principal import AccessClaims
from stockyard.core.responses import AUTHENTICATED, error_responses
from stockyard.operations import service

router = APIRouter(prefix="/api/v1", tags=["tenant"])

TenantExporter = Annotated[AccessClaims, Depends(require(Scope.TENANT_EXPORT))]


@router.get(
    "/tenant/export",
    summary="Everything this tenant owns, as a zip of JSON Lines (owners)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "`<table>.jsonl` per table and `manifest.json` with the counts.",
        },
        **error_responses(*AUTHENTICATED, 429),
    },
)
async def export_tenant(
    session: TenantSession,
    principal: TenantExporter,
    sessionmaker: SessionmakerDep,
    limiter: LimiterDep,
) -> StreamingResponse:
    """Catalogue, ledger, balances, reservations, users (no password hashes), API clients (no
    secrets), audit trail, events, webhooks (no secrets) and their deliveries, each table a
    `.jsonl` file in key order, read in one snapshot under row-level security as this tenant.
    Streamed: a large tenant starts downloading at once; `manifest.json` is written last, so
    an archive without it was cut off. Two exports at once per tenant, then one a minute
    (each holds a database connection and a snapshot while it streams)."""
    decision = await limiter.check_key(
        f"export:{principal.tenant_id}", policy="export", per_minute=1, burst=2
    )
    decision.raise_if_limited()
    await audit_trail.record(
        session, principal, action="tenant.export", resource_type="tenant", status=200
    )
    return StreamingResponse(
        service.export_tenant(sessionmaker, principal.tenant_id),
        media_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="stockyard-export.zip"',
            "Cache-Control": "no-store",
        },
    )
