"""Dependency aliases shared by every router, in one place."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from stockyard.api.services import ServicesDep
from stockyard.auth.dependencies import CurrentPrincipal, require
from stockyard.auth.scopes import Scope
from stockyard.auth.tokens import AccessClaims
from stockyard.tenants.dependencies import TenantSession, UnscopedSession


def get_request_id(request: Request) -> str | None:
    request_id = request.scope.get("state", {}).get("request_id")
    return request_id if isinstance(request_id, str) else None


RequestId = Annotated[str | None, Depends(get_request_id)]
InventoryReader = Annotated[AccessClaims, Depends(require(Scope.INVENTORY_READ))]
InventoryWriter = Annotated[AccessClaims, Depends(require(Scope.INVENTORY_WRITE))]

__all__ = [
    "CurrentPrincipal",
    "InventoryReader",
    "InventoryWriter",
    "RequestId",
    "ServicesDep",
    "TenantSession",
    "UnscopedSession",
    "require",
]
