"""Documented error responses, so the OpenAPI document states every status a route returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Authenticated but not allowed",
    404: "Not found (also: another tenant's resource)",
    409: "Conflict with the current state",
    412: "If-Match does not match the current version",
    422: "Invalid input",
    428: "If-Match is required",
    429: "Rate limited; see Retry-After",
    503: "A dependency is unavailable; retry",
}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None
    request_id: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorEnvelope, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in sorted(set(statuses))
    }


# What any authenticated, tenant-scoped route may answer besides its own errors.
AUTHENTICATED = (401, 403, 422, 429, 503)
