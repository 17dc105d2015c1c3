"""Request IDs and the access log, as plain ASGI (no BaseHTTPMiddleware: it buffers bodies
and breaks contextvars across the request).

Every response, errors and unknown routes included, carries X-Request-ID; the same id is in
every log line of the request and in its error envelope. An exception nothing else caught
becomes a 500 envelope here, after the traceback has gone to the log and nowhere else.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockyard.api.errors import envelope_response
from stockyard.console.errors import bare_page, internal_error_page, is_console_path
from stockyard.core import metrics

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = structlog.get_logger("stockyard.access")


# Served by FastAPI itself, outside the routers: named by their path, not "<unmatched>".
_FRAMEWORK_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope["path"] in _FRAMEWORK_PATHS else "<unmatched>"


def _is_plain_413(message: Message) -> bool:
    return message["status"] == 413 and any(
        name == b"content-type" and value.startswith(b"text/plain")
        for name, value in message.get("headers", ())
    )


class _Exchange:
    """One request's response as it passes out: it stamps X-Request-ID (and HSTS, and the
    limiter's RateLimit headers) on the response start, notes the status, and turns
    Starlette's plain-text 413 into the envelope. A method of an object rather than a
    closure: a closure that passes itself on (as the 413 answer's `send`) is a reference
    cycle, which kept every request's scope, exit stacks and protocol cycle alive until the
    collector's next full pass (~33 objects a request, a 5-8 ms pause every second or so
    under load)."""

    __slots__ = (
        "_send",
        "body_limit_hit",
        "hsts",
        "receive",
        "request_id",
        "response_started",
        "scope",
        "status",
    )

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, hsts: str | None
    ) -> None:
        self.scope = scope
        self.receive = receive
        self._send = send
        self.request_id = request_id
        self.hsts = hsts
        self.status = 500
        self.response_started = False
        # Starlette's body limit answers a too-large body with its own plain-text 413 (and
        # then unwinds with a private signal); it leaves here as the envelope instead.
        self.body_limit_hit = False

    async def send(self, message: Message) -> None:
        if self.body_limit_hit:
            return
        scope = self.scope
        if message["type"] == "http.response.start" and _is_plain_413(message):
            self.body_limit_hit = True
            too_large = "The request body is larger than this route accepts."
            response = (
                bare_page(413, "Too large", too_large, self.request_id)
                if is_console_path(scope["path"])
                else envelope_response(
                    status=413,
                    code="payload_too_large",
                    message=too_large,
                    request_id=self.request_id,
                )
            )
            self.body_limit_hit = False
            await response(scope, self.receive, self.send)
            self.body_limit_hit = True
            return
        if message["type"] == "http.response.start":
            self.response_started = True
            self.status = message["status"]
            headers = MutableHeaders(scope=message)
            headers["X-Request-ID"] = self.request_id
            if self.hsts is not None and scope.get("scheme") == "https":
                headers["Strict-Transport-Security"] = self.hsts
            rate_limit: dict[str, str] | None = scope["state"].get("rate_limit_headers")
            for name, value in (rate_limit or {}).items():
                if name not in headers:
                    headers[name] = value
        await self._send(message)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_max_age: int = 0) -> None:
        self.app = app
        # Served over TLS by `stockyard serve --ssl-certfile`: browsers are told to use https
        # only (RFC 6797). Behind a TLS-terminating proxy the proxy sends it instead.
        self.hsts = f"max-age={hsts_max_age}; includeSubDomains" if hsts_max_age else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        inbound = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                inbound = value.decode("latin-1")
                break
        request_id = inbound if inbound and REQUEST_ID_PATTERN.match(inbound) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        started = time.perf_counter()
        exchange = _Exchange(scope, receive, send, request_id, self.hsts)
        try:
            await self.app(scope, receive, exchange.send)
        except Exception:
            if exchange.body_limit_hit:
                return
            log.exception("unhandled_exception")
            if exchange.response_started:
                raise
            if is_console_path(scope["path"]):
                await internal_error_page(request_id)(scope, receive, exchange.send)
                return
            response = envelope_response(
                status=500,
                code="internal_error",
                message="Something went wrong on our side. Quote the request_id to support.",
                request_id=request_id,
            )
            await response(scope, receive, exchange.send)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            status = exchange.status
            fields: dict[str, Any] = {
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
            log.info("request", **fields)
            metrics.REQUESTS.labels(scope["method"], route, str(status)).inc()
            metrics.LATENCY.labels(scope["method"], route).observe(elapsed)
            if status == 429:
                metrics.RATE_LIMITED.inc()
            structlog.contextvars.clear_contextvars()
