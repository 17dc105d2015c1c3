"""Optimistic concurrency: ETag is the row version; writes must name the version they saw."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

from stockyard.core.errors import PreconditionFailed, PreconditionRequired

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=64,
        description='The ETag of the version being changed, e.g. "3".',
    ),
]


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int:
    """The version an If-Match header names; 428 without one, 412 when it can't match."""
    if if_match is None:
        raise PreconditionRequired()
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise PreconditionFailed()
    return int(value)
