"""Failures of console requests as pages: the API's error handlers hand them here for paths
under /console, so the same errors (and the same audit of denials) reach people as HTML.
Every error page shows the request id, for the user to quote to support."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from html import escape
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response

from stockyard.console.pages import PAGE_HEADERS, PREFIX, redirect, render
from stockyard.console.pipeline import cookie_name, sessions_of
from stockyard.core.redis import REDIS_ERRORS

TITLES = {
    400: "That could not be done",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "That conflicts with the current state",
    413: "Too large",
    422: "Check what you entered",
    429: "Too many requests",
    431: "Too large",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def is_console_request(request: Request) -> bool:
    return is_console_path(request.url.path)


async def error_page(
    request: Request,
    *,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if status == 401:
        return await _back_to_sign_in(request)
    kept = {k: v for k, v in (headers or {}).items() if k.lower() in {"retry-after", "allow"}}
    return render(
        request,
        "error.html",
        status=status,
        title=TITLES.get(status, "That could not be done"),
        message=message,
        status_code=status,
        headers=kept,
    )


async def _back_to_sign_in(request: Request) -> Response:
    """The session is missing, timed out or its tokens were revoked: forget it and sign in."""
    name = cookie_name(request.app.state.settings)
    session_id = request.cookies.get(name)
    if session_id and len(session_id) <= 128:
        # If Redis is away, the record times out on its own; the cookie goes below either way.
        with contextlib.suppress(*REDIS_ERRORS):
            await sessions_of(request).destroy(session_id)
    target = PREFIX + "/sign-in"
    if request.method == "GET" and request.url.path != target:
        target += "?next=" + quote(request.url.path)
    response = redirect(target)
    response.delete_cookie(name, path="/", secure=name.startswith("__Host-"), httponly=True)
    return response


def bare_page(status: int, title: str, message: str, request_id: str) -> Response:
    """An error page drawn without a template, for failures the middleware answers itself (a
    body over the limit, an exception nothing handled, whose cause may be a template): no
    detail of what failed, the request id to quote."""
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p><p>Quote this request id to support: "
        f"<code>{escape(request_id)}</code></p><p><a href=/console/>Back to the console</a></p>"
    )
    return Response(body, status_code=status, media_type="text/html", headers=PAGE_HEADERS)


def internal_error_page(request_id: str) -> Response:
    return bare_page(500, "Something went wrong on our side", "Nothing was changed.", request_id)
