from __future__ import annotations

from fastapi import APIRouter, Depends

from stockyard.api.openapi import error_responses
from stockyard.api.services import ServicesDep
from stockyard.auth.guard import limit_by_ip
from stockyard.tenants import service as tenant_service
from stockyard.tenants.dependencies import UnscopedSession
from stockyard.tenants.exceptions import SignupDisabled
from stockyard.tenants.schemas import TenantCreate, TenantRead

router = APIRouter(prefix="/api/v1", tags=["tenants"])


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantRead,
    dependencies=[Depends(limit_by_ip)],
    summary="Sign up: create a tenant and its first owner",
    responses=error_responses(403, 409, 422, 429, 503),
)
async def create_tenant(
    body: TenantCreate,
    session: UnscopedSession,
    services: ServicesDep,
) -> TenantRead:
    if not services.settings.allow_signup:
        raise SignupDisabled()
    tenant = await tenant_service.create_tenant(
        session,
        name=body.name,
        slug=body.slug,
        owner_email=str(body.owner_email),
        owner_password=body.owner_password,
    )
    return TenantRead.model_validate(tenant)
