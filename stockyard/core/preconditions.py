"""Optimistic concurrency: ETag is the row version; writes must name the version they saw."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

from stockyard.core.errors import PreconditionFailed

# Required: a write without it answers 428 precondition_required (the validation handler
# turns FastAPI's "missing header" into that), so the document says so too.
IfMatch = Annotated[
    str,
    Header(
        alias="If-Match",
        max_length=64,
        description='The ETag of the version being changed, e.g. "3".',
    ),
]
IF_MATCH_HEADER = "if-match"


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str) -> int:
    """The version an If-Match header names; 412 when it can't match any."""
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise PreconditionFailed()
    return int(value)
