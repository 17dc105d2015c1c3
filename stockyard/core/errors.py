"""The one error type that reaches clients.

Every domain error subclasses `AppError`; the API layer turns it into the envelope
`{"error": {"code", "message", "details", "request_id"}}`. Nothing below the endpoint layer
raises `HTTPException`, so the envelope is the only error shape a client ever sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

ErrorDetails: TypeAlias = Mapping[str, object] | Sequence[object] | None


class AppError(Exception):
    """A failure the client caused or must know about, with its HTTP status."""

    status_code: int = 400
    code: str = "bad_request"
    message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: ErrorDetails = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(self.message)


def bearer_challenge(**attributes: str) -> str:
    """An RFC 6750 `WWW-Authenticate: Bearer` challenge; attribute values are quoted strings,
    so quotes and backslashes are dropped from them."""
    if not attributes:
        return "Bearer"
    quoted = (
        f'{name}="{value.replace(chr(34), "").replace(chr(92), "")}"'
        for name, value in attributes.items()
    )
    return "Bearer " + ", ".join(quoted)


class Unauthorized(AppError):
    """No credentials. Always carries `WWW-Authenticate` so clients know the scheme (RFC 6750
    section 3: a request with no token gets the bare challenge)."""

    status_code = 401
    code = "unauthorized"
    message = "Authentication is required."
    bearer_error: str | None = None

    def __init__(self, message: str | None = None, *, details: ErrorDetails = None) -> None:
        super().__init__(message, details=details)
        challenge = (
            bearer_challenge(error=self.bearer_error, error_description=self.message)
            if self.bearer_error
            else bearer_challenge()
        )
        self.headers["WWW-Authenticate"] = challenge


class InvalidToken(Unauthorized):
    """A token was presented and is not good: malformed, forged, expired or revoked."""

    bearer_error = "invalid_token"
    message = "The access token is invalid or expired."


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "The resource does not exist."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class PreconditionFailed(AppError):
    status_code = 412
    code = "precondition_failed"
    message = "If-Match does not match the current version."


class PreconditionRequired(AppError):
    status_code = 428
    code = "precondition_required"
    message = "This request needs an If-Match header."


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"
    message = "The request is not valid."


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    message = "The request body is larger than this route accepts."


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests."


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    message = "A service Stockyard depends on is unavailable; retry shortly."


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    message = "The database is unavailable; retry shortly."
