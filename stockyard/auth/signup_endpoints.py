"""Signup: a tenant and its first owner account, created together."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from stockyard.auth import signup
from stockyard.auth.exceptions import SignupDisabled
from stockyard.auth.guard import limit_by_ip
from stockyard.auth.pipeline import UnscopedSession
from stockyard.auth.schemas import TenantCreate
from stockyard.core.dependencies import SettingsDep
from stockyard.core.responses import error_responses
from stockyard.tenants.schemas import TenantRead

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
    settings: SettingsDep,
) -> TenantRead:
    if not settings.allow_signup:
        raise SignupDisabled()
    tenant = await signup.create_tenant(
        session,
        name=body.name,
        slug=body.slug,
        owner_email=str(body.owner_email),
        owner_password=body.owner_password,
    )
    return TenantRead.model_validate(tenant)
