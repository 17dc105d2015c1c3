"""Keyset pagination, one mechanism for every list: `Paging` (limit and cursor, one
dependency), `PageRequest.cut` (where a page ends), `Page[T]` (what a page looks like), and
opaque cursors: clients pass back what they were given, unread.

A cursor is decoded by exactly one typed decoder per page shape; anything that decoder did not
issue (bad base64, wrong JSON, wrong arity, a value of the wrong type, a naive timestamp)
answers 422 `invalid_cursor`, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from stockyard.core.errors import ValidationFailed

T = TypeVar("T")

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size (max 500).")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"
    message = "The cursor is not valid: pass back a previous page's next_cursor unchanged."


def encode_cursor(*values: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def _parts(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor() from None
    if (
        not isinstance(values, list)
        or len(values) != count
        or not all(isinstance(value, str) and "\x00" not in value for value in values)
    ):
        raise InvalidCursor()
    return values


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidCursor() from None


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidCursor() from None
    if moment.tzinfo is None:
        raise InvalidCursor()
    return moment


def text_cursor(cursor: str | None) -> str | None:
    """A page ordered by one text key (a SKU, a location code)."""
    return None if cursor is None else _parts(cursor, 1)[0]


def text_pair_cursor(cursor: str | None) -> tuple[str, str] | None:
    """A page ordered by two text keys (SKU, then location code)."""
    if cursor is None:
        return None
    first, second = _parts(cursor, 2)
    return first, second


def id_cursor(cursor: str | None) -> uuid.UUID | None:
    """A page ordered by id."""
    return None if cursor is None else _uuid(_parts(cursor, 1)[0])


def instant_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A page ordered by (time, id)."""
    if cursor is None:
        return None
    moment, row_id = _parts(cursor, 2)
    return _instant(moment), _uuid(row_id)


def position_cursor(cursor: str | None) -> tuple[int, uuid.UUID] | None:
    """A feed position: a transaction id (a 64-bit counter), then an id within it."""
    if cursor is None:
        return None
    counter, row_id = _parts(cursor, 2)
    if not counter.isascii() or not counter.isdigit() or int(counter) >= 2**63:
        raise InvalidCursor()
    return int(counter), _uuid(row_id)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What a list route was asked for: a page size and the previous page's cursor."""

    limit: int
    cursor: str | None

    @property
    def fetch(self) -> int:
        """Rows to ask the repository for: one more than the page, to learn if another follows."""
        return self.limit + 1

    def cut(
        self, rows: list[T], cursor_of: Callable[[T], tuple[str, ...]]
    ) -> tuple[list[T], str | None]:
        """The page, and the cursor of the next one: the extra row fetched, if any, proves
        another page exists, and the last row kept is where it starts."""
        page = rows[: self.limit]
        if len(rows) <= self.limit:
            return page, None
        return page, encode_cursor(*cursor_of(page[-1]))


async def page_request(limit: Limit = DEFAULT_PAGE_SIZE, cursor: Cursor = None) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor)


Paging = Annotated[PageRequest, Depends(page_request)]


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next (null: the end).
    Each list names its own subclass (`ProductPage(Page[ProductRead])`), so the document and
    generated clients carry one readable type per list."""

    items: list[T]
    next_cursor: str | None
