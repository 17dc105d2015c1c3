"""API clients: credentials a tenant hands to its own applications."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.auth import repository as auth_repository
from stockyard.auth.grants import hash_client_secret
from stockyard.auth.limiter import RateLimiter
from stockyard.auth.models import ApiClient
from stockyard.core import audit_trail
from stockyard.core.errors import NotFound
from stockyard.core.principal import AccessClaims


async def create_client(
    session: AsyncSession, principal: AccessClaims, *, name: str, scopes: list[str]
) -> tuple[ApiClient, str]:
    """A new client and its secret. The secret is returned once and stored only hashed."""
    secret = "sy_cs_" + secrets.token_urlsafe(32)
    client = ApiClient(
        tenant_id=principal.tenant_id,
        id=uuid.uuid4(),
        name=name,
        secret_hash=hash_client_secret(secret),
        scopes=sorted(set(scopes)),
        created_at=datetime.now(UTC),
    )
    await auth_repository.add(session, client)
    await audit_trail.record(
        session,
        principal,
        action="client.create",
        resource_type="api_client",
        resource_id=client.id,
        status=201,
        details={"scopes": client.scopes},
    )
    return client, secret


async def list_clients(
    session: AsyncSession,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ApiClient]:
    return await auth_repository.list_clients(session, after=after, limit=limit)


async def delete_client(
    session: AsyncSession, limiter: RateLimiter, principal: AccessClaims, *, client_id: uuid.UUID
) -> None:
    """Revoke a client: its tokens stop working on their next request."""
    client = await auth_repository.get_client(session, client_id)
    if client is None or client.revoked_at is not None:
        raise NotFound("No such API client.")
    client.revoked_at = datetime.now(UTC)
    await session.flush()
    await audit_trail.record(
        session,
        principal,
        action="client.delete",
        resource_type="api_client",
        resource_id=client.id,
        status=204,
    )
    await limiter.revoke_on_commit(session, [client.id])
