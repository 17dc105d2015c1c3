"""`Idempotent`: everything a POST needs to answer a retried request with its first answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from stockyard.auth.pipeline import CurrentPrincipal, InventoryWrites, TenantSession
from stockyard.core.database import Writes
from stockyard.core.dependencies import SettingsDep
from stockyard.core.principal import AccessClaims
from stockyard.idempotency.service import IdempotencyKeyHeader, respond_once


@dataclass(frozen=True, slots=True)
class IdempotentPost:
    session: Writes
    principal: AccessClaims
    key: str | None
    route: str
    ttl: int

    async def respond(
        self,
        body: BaseModel | None,
        operation: Callable[[], Awaitable[BaseModel]],
        *,
        status_code: int = 201,
        item_path: str | None = None,
    ) -> JSONResponse:
        return await respond_once(
            self.session,
            self.principal,
            key=self.key,
            route=self.route,
            body=body,
            status_code=status_code,
            ttl=self.ttl,
            operation=operation,
            item_path=item_path,
        )


async def get_idempotent_post(
    request: Request,
    session: TenantSession,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> IdempotentPost:
    return IdempotentPost(
        session=session,
        principal=principal,
        key=idempotency_key,
        route=request.url.path,
        ttl=settings.idempotency_ttl_seconds,
    )


async def get_idempotent_write(
    request: Request,
    context: InventoryWrites,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> IdempotentPost:
    """The same, for the ledger write routes: their key is kept in their driver transaction."""
    return IdempotentPost(
        session=context.session,
        principal=context.principal,
        key=idempotency_key,
        route=request.url.path,
        ttl=settings.idempotency_ttl_seconds,
    )


Idempotent = Annotated[IdempotentPost, Depends(get_idempotent_post)]
IdempotentWrite = Annotated[IdempotentPost, Depends(get_idempotent_write)]
