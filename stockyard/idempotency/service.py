"""Idempotency-Key: a retried POST returns the original answer instead of applying twice.

The key row is written in the request's own transaction, so a request that fails leaves no
key behind (the client may retry), and a request that succeeds stores its response in the same
commit as its effects. Two concurrent requests with one key serialize on the key's unique index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from stockyard.auth.tokens import AccessClaims
from stockyard.core.errors import ValidationFailed
from stockyard.idempotency import repository as idempotency_repository

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Makes a retried POST safe: the same key and body return the first answer.",
    ),
]


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was used with a different request."


def _fingerprint(route: str, body: BaseModel | None) -> bytes:
    payload = json.dumps(
        [route, jsonable_encoder(body) if body is not None else None], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).digest()


async def respond_once(
    session: AsyncSession,
    principal: AccessClaims,
    *,
    key: str | None,
    route: str,
    body: BaseModel | None,
    status_code: int,
    ttl: int,
    operation: Callable[[], Awaitable[BaseModel]],
) -> JSONResponse:
    """Run `operation` once per key; replays get the stored status and body."""
    if key is None:
        return JSONResponse(jsonable_encoder(await operation()), status_code=status_code)
    request_hash = _fingerprint(route, body)
    claimed = await idempotency_repository.claim(
        session, tenant_id=principal.tenant_id, key=key, request_hash=request_hash, ttl=ttl
    )
    if not claimed:
        stored = await idempotency_repository.get(session, key)
        if stored is None or stored.request_hash != request_hash or stored.status_code is None:
            raise IdempotencyKeyReused()
        return JSONResponse(
            stored.response_body,
            status_code=stored.status_code,
            headers={"Idempotent-Replayed": "true"},
        )
    payload = jsonable_encoder(await operation())
    await idempotency_repository.store_response(
        session, key=key, status_code=status_code, body=payload
    )
    return JSONResponse(payload, status_code=status_code)
