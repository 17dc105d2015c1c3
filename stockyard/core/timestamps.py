"""Instants the database can store: timezone-aware and representable in UTC.

`0001-01-01T00:00:00+14:00` is valid ISO 8601 but lies before year 1 in UTC; the driver would
fail converting it (an OverflowError, a 500). Normalising to UTC at validation time turns that
into a 422 that names the field, on every route that takes an instant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant lies outside the years 1 to 9999 in UTC") from None


Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
