"""All SQL of idempotency keys (inside the tenant context)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.idempotency.models import IdempotencyKey

_CLAIM = text(
    """
    INSERT INTO idempotency_key (tenant_id, key, request_hash, expires_at)
    VALUES (:tenant_id, :key, :request_hash, now() + make_interval(secs => :ttl))
    ON CONFLICT (tenant_id, key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, status_code = NULL, response_body = NULL,
            created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE idempotency_key.expires_at <= now()
    RETURNING key
    """
)


async def claim(
    session: AsyncSession, *, tenant_id: uuid.UUID, key: str, request_hash: bytes, ttl: int
) -> bool:
    """Take the key for this request. A concurrent request holding it makes this wait until
    that one commits (then False: replay) or rolls back (then True: ours)."""
    result = await session.execute(
        _CLAIM,
        {"tenant_id": tenant_id, "key": key, "request_hash": request_hash, "ttl": float(ttl)},
    )
    return result.first() is not None


async def get(session: AsyncSession, key: str) -> IdempotencyKey | None:
    return await session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))


async def store_response(session: AsyncSession, *, key: str, status_code: int, body: Any) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.key == key)
        .values(status_code=status_code, response_body=body)
    )


async def tenants_with_expired_keys(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.scalars(text("SELECT stockyard_tenants_with_expired_idempotency_keys()"))
    return list(rows)


async def delete_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= func.now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
