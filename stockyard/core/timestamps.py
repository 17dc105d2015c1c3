"""Instants the database can store: timezone-aware and representable in UTC.

`0001-01-01T00:00:00+14:00` is valid ISO 8601 but lies before year 1 in UTC; the driver would
fail converting it (an OverflowError, a 500). Normalising to UTC at validation time turns that
into a 422 that names the field, on every route that takes an instant.

An instant that is stored (`StoredInstant`) must also not be the very first or last one of
those years: asyncpg writes `0001-01-01T00:00:00Z` and `9999-12-31T23:59:59.999999Z` as
PostgreSQL's -infinity and infinity and reads them back as naive times, so a movement stored at
one would come back as another value. As a bound (a filter's start or end, a replay window)
either is fine: -infinity and infinity compare as the earliest and latest of all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

# The date part every RFC 3339 date-time starts with. Without this check a query string such as
# `?start=0.5` would be read as a Unix timestamp, a meaning the document does not give it.
_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _date_time_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME_START.match(value):
        raise ValueError(
            "expected an RFC 3339 date-time with a time zone, e.g. 2026-01-31T09:30:00Z"
        )
    return value


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant lies outside the years 1 to 9999 in UTC") from None


_INFINITIES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def _storable(moment: datetime) -> datetime:
    if moment in _INFINITIES:
        raise ValueError(
            "a stored instant lies from 0001-01-01T00:00:00.000001Z to 9999-12-31T23:59:59.999998Z"
        )
    return moment


Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_in_utc)]
StoredInstant = Annotated[Instant, AfterValidator(_storable)]


def instant_key(moment: datetime) -> str:
    """An instant read back from the database as a cursor's text. A row stored at -infinity
    or infinity (before `StoredInstant` refused them) comes back from asyncpg as a naive
    `datetime.min` or `datetime.max`: in UTC, those are the instants it was given, and as a
    cursor they are sent back as -infinity and infinity again, so paging goes past them."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()
