"""Opaque cursors for keyset pagination: clients pass back what they were given, unread."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Query

from stockyard.core.errors import ValidationFailed

T = TypeVar("T")

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size (max 500).")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]


def encode_cursor(*values: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, parts: int) -> list[str] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed("The cursor is not valid.", details={"cursor": cursor}) from None
    if (
        not isinstance(values, list)
        or len(values) != parts
        or not all(isinstance(value, str) for value in values)
    ):
        raise ValidationFailed("The cursor is not valid.", details={"cursor": cursor})
    return values


def split_page(
    rows: list[T], limit: int, cursor_of: Callable[[T], tuple[str, ...]]
) -> tuple[list[T], str | None]:
    """Rows were fetched with `limit + 1`: the extra row, if any, proves another page exists,
    and the last row kept is where it starts."""
    page = rows[:limit]
    if len(rows) <= limit:
        return page, None
    return page, encode_cursor(*cursor_of(page[-1]))
