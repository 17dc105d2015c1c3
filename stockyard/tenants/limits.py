"""Per-tenant rate-limit overrides, cached per worker so the guard never queries per request."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stockyard.tenants import repository as tenant_repository

CACHE_SECONDS = 30.0


class TenantLimits:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        default_per_minute: int,
        default_burst: int,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._default = (default_per_minute, default_burst)
        self._cache: dict[uuid.UUID, tuple[float, tuple[int, int]]] = {}

    async def get(self, tenant_id: uuid.UUID) -> tuple[int, int]:
        """(requests per minute, burst) for one token of this tenant."""
        cached = self._cache.get(tenant_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._sessionmaker() as session, session.begin():
            per_minute, burst = await tenant_repository.rate_limit_override(session, tenant_id)
        limits = (per_minute or self._default[0], burst or self._default[1])
        self._cache[tenant_id] = (now + CACHE_SECONDS, limits)
        return limits

    def forget(self, tenant_id: uuid.UUID) -> None:
        self._cache.pop(tenant_id, None)


async def get_tenant_limits(request: Request) -> TenantLimits:
    limits: TenantLimits = request.app.state.tenant_limits
    return limits


TenantLimitsDep = Annotated[TenantLimits, Depends(get_tenant_limits)]
