"""Instants the database can store: timezone-aware and representable in UTC.

`0001-01-01T00:00:00+14:00` is valid ISO 8601 but lies before year 1 in UTC; the driver would
fail converting it (an OverflowError, a 500). Normalising to UTC at validation time turns that
into a 422 that names the field, on every route that takes an instant.

The very first and last instants of those years are refused too: the driver writes
`0001-01-01T00:00:00Z` and `9999-12-31T23:59:59.999999Z` as PostgreSQL's -infinity and infinity
and reads them back as naive times, so a movement stored at one would come back as another
value (and its page's cursor would be refused). The range is the one the database holds as
instants: from `0001-01-01T00:00:00.000001Z` to `9999-12-31T23:59:59.999998Z`.
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


_INFINITIES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def _in_utc(moment: datetime) -> datetime:
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant lies outside the years 1 to 9999 in UTC") from None
    if in_utc in _INFINITIES:
        raise ValueError(
            "the instant lies outside 0001-01-01T00:00:00.000001Z to 9999-12-31T23:59:59.999998Z"
        )
    return in_utc


Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_in_utc)]
