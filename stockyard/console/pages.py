"""Rendering: Jinja2 templates (autoescaped), the console's security headers, its static
files, and the few values every page shows (who is signed in, the request id)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from stockyard.console.sessions import ConsoleSession
from stockyard.core.dependencies import request_id_of
from stockyard.core.pagination import PageRequest

PREFIX = "/console"
# Rows per page: shorter than the API's default page, for people to read.
PAGE_ROWS = 50

# No inline script or style anywhere: the page's own files only, no framing, no referrer
# beyond our origin, forms post only to us.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Pages hold tenant data: never kept by a browser cache or a proxy.
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}

STATIC_TYPES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript"}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str


@cache
def static_file(name: str) -> StaticFile | None:
    if name not in STATIC_TYPES:
        return None
    body = resources.files("stockyard.console").joinpath("static", name).read_bytes()
    return StaticFile(body, STATIC_TYPES[name], hashlib.sha256(body).hexdigest()[:12])


def static_url(name: str) -> str:
    found = static_file(name)
    assert found is not None, name
    return f"{PREFIX}/static/{name}?v={found.version}"


def query(base: str, **params: object) -> str:
    """`base` with the params that have a value as its query string."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return f"{base}?{urlencode(kept)}" if kept else base


def page_url(base: str, next_cursor: str | None, **filters: object) -> str | None:
    """The next page's link (the same filters, the API's own cursor), or None at the end."""
    return query(base, **filters, cursor=next_cursor) if next_cursor else None


_templates = Environment(
    loader=PackageLoader("stockyard.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals.update(static_url=static_url, query=query, prefix=PREFIX)


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    me: ConsoleSession | None = None,
    csrf: str | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = _templates.get_template(template).render(
        request_id=request_id_of(request),
        path=request.url.path,
        me=me,
        csrf_token=csrf if csrf is not None else (me.csrf_token if me else ""),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def redirect(url: str, *, headers: dict[str, str] | None = None) -> Response:
    # 303: the browser follows a form post with a GET, so a reload never posts twice.
    return RedirectResponse(url, status_code=303, headers={**PAGE_HEADERS, **(headers or {})})


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of ours, never another site."""
    ours = target is not None and target.startswith(PREFIX + "/")
    if ours and target is not None and "\\" not in target and "//" not in target:
        return target
    return PREFIX + "/"


def console_page(paging: PageRequest) -> PageRequest:
    """The page a list shows: at most PAGE_ROWS rows, from the API's own cursor."""
    return PageRequest(limit=min(paging.limit, PAGE_ROWS), cursor=paging.cursor)
