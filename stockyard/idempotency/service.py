"""Idempotency-Key: a retried POST returns the original answer instead of applying twice.

The key row is written in the request's own transaction, so a request that fails leaves no
key behind (the client may retry), and a request that succeeds stores its response in the same
commit as its effects. Two concurrent requests with one key serialize on the key's unique index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from stockyard.core.database import Writes
from stockyard.core.errors import ValidationFailed
from stockyard.core.principal import AccessClaims
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


def _json(model: BaseModel) -> Any:
    """The JSON a model is sent as: what FastAPI's jsonable_encoder gives for a model (field
    aliases, JSON types), straight from pydantic-core rather than walked again in Python."""
    return model.model_dump(mode="json", by_alias=True)


def _fingerprint(route: str, body: BaseModel | None) -> bytes:
    payload = json.dumps([route, _json(body) if body is not None else None], sort_keys=True)
    return hashlib.sha256(payload.encode()).digest()


async def respond_once(
    session: Writes,
    principal: AccessClaims,
    *,
    key: str | None,
    route: str,
    body: BaseModel | None,
    status_code: int,
    ttl: int,
    operation: Callable[[], Awaitable[BaseModel]],
    item_path: str | None = None,
) -> JSONResponse:
    """Run `operation` once per key; replays get the stored status and body (and the same
    ETag and Location, derived from it)."""
    if key is None:
        payload = _json(await operation())
        return JSONResponse(
            payload, status_code=status_code, headers=_resource_headers(payload, item_path)
        )
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
            headers={
                "Idempotent-Replayed": "true",
                **_resource_headers(stored.response_body, item_path),
            },
        )
    payload = _json(await operation())
    await idempotency_repository.store_response(
        session, key=key, status_code=status_code, body=payload
    )
    return JSONResponse(
        payload, status_code=status_code, headers=_resource_headers(payload, item_path)
    )


def _resource_headers(payload: object, item_path: str | None) -> dict[str, str]:
    """A created, versioned resource names its version (ETag, for a later If-Match) and,
    where it can be fetched on its own, its URL (Location)."""
    if not isinstance(payload, dict):
        return {}
    headers = {}
    if isinstance(payload.get("version"), int):
        headers["ETag"] = f'"{payload["version"]}"'
    if item_path is not None and "id" in payload:
        headers["Location"] = item_path.format(id=payload["id"])
    return headers
