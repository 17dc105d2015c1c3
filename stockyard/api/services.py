"""The per-process service objects, built by the lifespan and reached through the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from stockyard.auth.keys import KeyRing
from stockyard.auth.limiter import RateLimiter
from stockyard.core.settings import Settings
from stockyard.tenants.limits import TenantLimits


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keyring: KeyRing
    limiter: RateLimiter
    tenant_limits: TenantLimits


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
