"""The tenant context: the only way a route reaches tenant data.

The tenant comes from the verified token alone. The dependency opens the request's one
transaction, scopes it to the tenant with a transaction-local setting before anything else
runs, and commits when the route returns, before the response is sent (scope="function"):
a failed commit becomes an error response, never a 2xx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.api.services import Services, ServicesDep
from stockyard.auth import repository as auth_repository
from stockyard.auth.guard import Authenticated, authenticate
from stockyard.auth.limiter import Revocation, revoked_token_of
from stockyard.core.errors import AppError, Forbidden, InvalidToken
from stockyard.tenants import repository as tenant_repository


@asynccontextmanager
async def request_transaction(services: Services) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, rolled back when it
    raises, unless the error says what was written must stand (a detected token reuse)."""
    async with services.sessionmaker() as session:
        await session.begin()
        try:
            yield session
        except AppError as error:
            if getattr(error, "commit_before_raising", False):
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


async def get_tenant_session(
    services: ServicesDep,
    auth: Annotated[Authenticated, Depends(authenticate)],
) -> AsyncIterator[AsyncSession]:
    claims = auth.claims
    if claims.is_staff:
        raise Forbidden("Staff tokens can't reach tenant data.")
    async with request_transaction(services) as session:
        tenant_repository.scope_to_tenant(session, claims.tenant_id)
        if auth.revocation is Revocation.UNKNOWN:
            # Redis had nothing on this session: PostgreSQL decides, and Redis learns it.
            family_revoked = await auth_repository.is_session_revoked(session, claims)
            token_revoked = not family_revoked and (
                await auth_repository.is_access_token_revoked(session, claims)
            )
            if services.settings.rate_limit_enabled:
                await services.limiter.remember(
                    claims.session_id, Revocation.REVOKED if family_revoked else Revocation.LIVE
                )
                if token_revoked:
                    await services.limiter.revoke([], [revoked_token_of(claims)])
            if family_revoked:
                raise InvalidToken("The session has been revoked.")
            if token_revoked:
                raise InvalidToken("The access token has been revoked.")
            # Give the connection back until the route needs one: a route that first does
            # slow CPU work (hashing a password) must not hold it. Its own work begins a
            # fresh transaction, scoped to the tenant again, at its first statement.
            await session.commit()
        yield session


async def get_support_session(
    services: ServicesDep,
    auth: Annotated[Authenticated, Depends(authenticate)],
) -> AsyncIterator[AsyncSession]:
    """A transaction for platform staff: no tenant, and the routes that use it switch to the
    support role, which the database lets read the audit trail and nothing else."""
    claims = auth.claims
    if not claims.is_staff or "support:read" not in claims.scopes:
        raise Forbidden("Support routes are for platform staff.")
    async with request_transaction(services) as session:
        if auth.revocation is Revocation.UNKNOWN and await auth_repository.is_session_revoked(
            session, claims
        ):
            raise InvalidToken("The session has been revoked.")
        yield session


async def get_unscoped_session(
    services: ServicesDep,
) -> AsyncIterator[AsyncSession]:
    """A request transaction with no tenant yet: sign-in and signup choose it themselves.
    Until they do, row-level security shows this session nothing."""
    async with request_transaction(services) as session:
        yield session


TenantSession = Annotated[AsyncSession, Depends(get_tenant_session, scope="function")]
SupportSession = Annotated[AsyncSession, Depends(get_support_session, scope="function")]
UnscopedSession = Annotated[AsyncSession, Depends(get_unscoped_session, scope="function")]
