"""All SQL of idempotency keys (inside the tenant context)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, text
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.core.database import Writes, fetch, fetch_one
from stockyard.idempotency.models import IdempotencyKey

# Run by the driver (core/database.fetch_one), so that a route on either kind of request
# transaction (an ORM session, or the ledger's `TenantWrites`) keeps its keys the same way.
_CLAIM = """
    INSERT INTO idempotency_key (tenant_id, key, request_hash, expires_at)
    VALUES (:tenant_id, :key, :request_hash, now() + make_interval(secs => :ttl))
    ON CONFLICT (tenant_id, key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, status_code = NULL, response_body = NULL,
            created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE idempotency_key.expires_at <= now()
    RETURNING key
"""
_GET = """
    SELECT request_hash, status_code, response_body::text AS response_body
    FROM idempotency_key WHERE key = :key
"""
_STORE = """
    UPDATE idempotency_key SET status_code = :status_code, response_body = :body::jsonb
    WHERE key = :key
"""


@dataclass(frozen=True, slots=True)
class StoredKey:
    request_hash: bytes
    # None while the request that claimed the key has not finished.
    status_code: int | None
    response_body: Any


async def claim(
    session: Writes, *, tenant_id: uuid.UUID, key: str, request_hash: bytes, ttl: int
) -> bool:
    """Take the key for this request. A concurrent request holding it makes this wait until
    that one commits (then False: replay) or rolls back (then True: ours)."""
    row = await fetch_one(
        session,
        _CLAIM,
        {"tenant_id": tenant_id, "key": key, "request_hash": request_hash, "ttl": float(ttl)},
    )
    return row is not None


async def get(session: Writes, key: str) -> StoredKey | None:
    row = await fetch_one(session, _GET, {"key": key})
    if row is None:
        return None
    body = row["response_body"]
    return StoredKey(
        request_hash=row["request_hash"],
        status_code=row["status_code"],
        response_body=json.loads(body) if body is not None else None,
    )


async def store_response(session: Writes, *, key: str, status_code: int, body: Any) -> None:
    await fetch(session, _STORE, {"key": key, "status_code": status_code, "body": json.dumps(body)})


async def tenants_with_expired_keys(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.scalars(text("SELECT stockyard_tenants_with_expired_idempotency_keys()"))
    return list(rows)


async def delete_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= func.now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
