"""Who is asking, and may they: one mechanism, declared in the route signature."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends

from stockyard.auth.guard import Authenticated, authenticate
from stockyard.auth.scopes import Scope
from stockyard.auth.tokens import AccessClaims
from stockyard.core.errors import Forbidden, bearer_challenge
from stockyard.tenants.dependencies import TenantSession


async def get_principal(
    auth: Annotated[Authenticated, Depends(authenticate)],
    session: TenantSession,
) -> AccessClaims:
    """The verified caller, only once the tenant session has confirmed the family is live."""
    del session
    return auth.claims


CurrentPrincipal = Annotated[AccessClaims, Depends(get_principal)]


def require(*scopes: Scope) -> Callable[..., Coroutine[Any, Any, AccessClaims]]:
    """A dependency that admits callers holding every scope named, else 403 `forbidden`."""
    needed = frozenset(scopes)

    async def _require(principal: CurrentPrincipal) -> AccessClaims:
        missing = needed - principal.scopes
        if missing:
            # RFC 6750 section 3.1: say which scope the token lacks.
            raise Forbidden(
                "This needs the scope " + " ".join(sorted(missing)) + ".",
                details={"missing_scopes": sorted(missing)},
                headers={
                    "WWW-Authenticate": bearer_challenge(
                        error="insufficient_scope", scope=" ".join(sorted(needed))
                    )
                },
            )
        return principal

    return _require
