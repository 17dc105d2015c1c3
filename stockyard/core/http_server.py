"""The HTTP/1.1 protocol `stockyard serve` runs: uvicorn's httptools protocol with a bound on
the request head.

httptools (llhttp, in C) parses a request in a fraction of the time h11 (pure Python) takes,
which on a one-worker server is most of the cost of a cheap request. But it accepts a request
line and headers of any size, buffering a header until its end arrives. This protocol refuses a
head over `STOCKYARD_MAX_HEADER_BYTES` with 431 and closes the connection: the parsed size is
checked when the head is complete, and bytes still arriving without the head ending are counted
as they come, so a connection never buffers more than the limit plus one read.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stockyard.core.settings import get_settings


def _refusal() -> bytes:
    """431 in the error envelope, with a request id of its own (no request exists yet)."""
    request_id = uuid.uuid4().hex
    body = json.dumps(
        {
            "error": {
                "code": "headers_too_large",
                "message": "The request line and headers are larger than this server accepts.",
                "details": None,
                "request_id": request_id,
            }
        }
    ).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"x-request-id: " + request_id.encode() + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head_bytes = get_settings().max_header_bytes
        # Between a message's first byte and the end of its head.
        self._in_head = False
        self._head_bytes = 0
        self._refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_bytes > self._max_head_bytes:
            # Stops the parser; uvicorn answers a parser error with send_400_response.
            self._refused = True
            raise _HeadTooLarge
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # A chunk that arrives while a head is still open is head bytes, all of it.
        head_was_open = self._in_head
        super().data_received(data)
        if head_was_open and self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                self._refused = True
                self._refuse()

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._in_head = False
        if not self.transport.is_closing():
            self.transport.write(_refusal())
            self.transport.close()


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""
