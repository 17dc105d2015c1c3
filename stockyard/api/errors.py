"""Exception handlers: every 4xx/5xx leaves as the one error envelope."""

from __future__ import annotations

import re
from collections.abc import Mapping

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stockyard.auth.exceptions import OAuthError
from stockyard.auth.oauth_endpoints import NO_STORE, OAUTH_ENDPOINTS
from stockyard.console.errors import error_page, is_console_request
from stockyard.core import audit_trail
from stockyard.core.dependencies import request_id_of
from stockyard.core.errors import (
    AppError,
    DatabaseUnavailable,
    ErrorDetails,
    PreconditionRequired,
)
from stockyard.core.preconditions import IF_MATCH_HEADER
from stockyard.core.principal import AccessClaims

log = structlog.get_logger()

_HTTP_CODES = {
    # The framework raises 400 only when it cannot read the body at all (bytes that are not
    # UTF-8, a broken multipart stream); our own bad-input errors are domain errors.
    400: "malformed_body",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def envelope_response(
    *,
    status: int,
    code: str,
    message: str,
    request_id: str | None,
    details: ErrorDetails = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {"code": code, "message": message, "details": details, "request_id": request_id}
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


async def _answer(
    request: Request,
    *,
    status: int,
    code: str,
    message: str,
    details: ErrorDetails = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error as its caller reads it: a page for the console's people, the envelope for
    everyone else."""
    if is_console_request(request):
        return await error_page(request, status=status, message=message, headers=headers)
    return envelope_response(
        status=status,
        code=code,
        message=message,
        details=details,
        request_id=request_id_of(request),
        headers=headers,
    )


async def _audit_failure(request: Request, exc: AppError) -> None:
    claims = request.scope.get("state", {}).get("claims")
    if not isinstance(claims, AccessClaims):
        return
    await audit_trail.record_refusal(
        request.app.state.sessionmaker,
        claims,
        status=exc.status_code,
        code=exc.code,
        method=request.method,
        route=getattr(request.scope.get("route"), "path", None),
    )


def oauth_error_response(
    *,
    status: int,
    error: str,
    description: str,
    request_id: str | None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """RFC 6749 section 5.2, the shape OAuth client libraries parse (`error` is a string)."""
    body = {"error": error, "error_description": description, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **dict(headers or {})})


def _is_oauth_endpoint(request: Request) -> bool:
    return getattr(request.scope.get("route"), "path", None) in OAUTH_ENDPOINTS


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if exc.status_code >= 500:
        log.warning("service_unavailable", code=exc.code)
    await _audit_failure(request, exc)
    if isinstance(exc, OAuthError) and not is_console_request(request):
        return oauth_error_response(
            status=exc.status_code,
            error=exc.code,
            description=exc.message,
            request_id=request_id_of(request),
            headers=exc.headers,
        )
    return await _answer(
        request,
        status=exc.status_code,
        code=exc.code,
        message=exc.message,
        details=exc.details,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if is_console_request(request):
        return await error_page(
            request, status=422, message="The address holds a value that is not valid here."
        )
    # Only where and what: the offending input is never echoed (it may be a password).
    details = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        for error in exc.errors()
    ]
    if details and all(
        d["type"] == "missing"
        and len(d["loc"]) == 2
        and d["loc"][0] == "header"
        and str(d["loc"][1]).lower() == IF_MATCH_HEADER
        for d in details
    ):
        error = PreconditionRequired()
        return envelope_response(
            status=error.status_code,
            code=error.code,
            message=error.message,
            request_id=request_id_of(request),
        )
    if _is_oauth_endpoint(request):
        fields = sorted({str(d["loc"][-1]) for d in details if d["loc"]})
        missing = all(d["type"] == "missing" for d in details)
        return oauth_error_response(
            status=400,
            error="invalid_request",
            description=f"{'Missing' if missing else 'Malformed'} form field: "
            f"{', '.join(fields) or 'body'}.",
            request_id=request_id_of(request),
        )
    return envelope_response(
        status=422,
        code="validation_error",
        message="The request is not valid.",
        details=details,
        request_id=request_id_of(request),
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if is_console_request(request):
        return await error_page(
            request,
            status=exc.status_code,
            message="There is no such page." if exc.status_code == 404 else message,
            headers=exc.headers,
        )
    if exc.status_code == 400:
        message = "The request body could not be read: send JSON encoded as UTF-8."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; every method the path
        # takes is allowed (RFC 9110 section 15.5.6).
        headers["Allow"] = ", ".join(_methods_of(request))
    if exc.status_code == 400 and _is_oauth_endpoint(request):
        return oauth_error_response(
            status=400,
            error="invalid_request",
            description="The form body could not be read.",
            request_id=request_id_of(request),
        )
    return envelope_response(
        status=exc.status_code,
        code=code,
        message=message,
        request_id=request_id_of(request),
        headers=headers,
    )


def _methods_of(request: Request) -> list[str]:
    """Every method the OpenAPI document lists for paths matching the request's path."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "methods_by_path", None
    )
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"),
                sorted(method.upper() for method in operations),
            )
            for path, operations in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.methods_by_path = table
    path = request.url.path
    return sorted(
        {method for pattern, methods in table if pattern.match(path) for method in methods}
    )


# 40001 serialization_failure, 40P01 deadlock_detected: retryable, never a 500.
CONCURRENCY_FAILURES = frozenset({"40001", "40P01"})


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _is_connection_failure(exc: BaseException) -> bool:
    """The database is unreachable, restarting, shutting down or out of a resource:
    retryable, so 503."""
    state = _sqlstate(exc)
    # Class 08: connection exception; class 53: insufficient resources (no connection slot
    # left, disk or memory full: the server's condition, not the request's); class 57:
    # operator intervention (shutdown, starting up).
    if state is not None and state[:2] in {"08", "53", "57"}:
        return True
    # asyncpg's own InterfaceError (a connection that is gone) reaches here from the
    # statements the driver runs directly (core/database.fetch), and its InternalClientError
    # from a connection the server dropped mid-operation before asyncpg saw its socket close.
    if isinstance(
        exc,
        OperationalError
        | InterfaceError
        | PoolTimeoutError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError,
    ):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, OSError | ConnectionError | TimeoutError)


async def _database_error(request: Request, exc: Exception) -> Response:
    state = _sqlstate(exc)
    if state is not None and state.startswith("22"):
        # SQLSTATE class 22, data exception: the input can't be stored as given (a NUL
        # character in text, a number out of range). The client's error, not ours.
        return await _answer(
            request,
            status=422,
            code="validation_error",
            message="The request holds a value the database cannot store "
            "(for example a NUL character in text).",
        )
    if state in CONCURRENCY_FAILURES:
        # The ledger takes its locks in one order, so a deadlock means a writer outside that
        # order; either way the transaction was rolled back whole and is safe to send again.
        log.warning("concurrent_update", sqlstate=state)
        return await _answer(
            request,
            status=503,
            code="concurrent_update",
            message="The request collided with a concurrent change and was not applied; "
            "send it again.",
            headers={"Retry-After": "1"},
        )
    if not _is_connection_failure(exc):
        raise exc
    log.warning("database_unavailable", error=type(exc).__name__)
    error = DatabaseUnavailable()
    return await _answer(
        request,
        status=error.status_code,
        code=error.code,
        message=error.message,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in (
        DBAPIError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        PoolTimeoutError,
        OSError,
        TimeoutError,
    ):
        app.add_exception_handler(exc_type, _database_error)
