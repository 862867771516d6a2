"""Times clients send: aware, in UTC, and within the years every service and the database can handle.

Every datetime field of every request model is a `ClientTime`. A time PostgreSQL, Python or another
service cannot carry (year 1 at +23:59 is year 0 in UTC; 9999-12-31 at -23:59 is year 10000) would
otherwise be answered 2xx and fail later, where nobody can tell the client.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, WithJsonSchema

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2101, 1, 1, tzinfo=UTC)  # the first instant no longer accepted


def in_utc_within_the_years_served(value: datetime) -> datetime:
    """`value` in UTC if it falls in the years 2000 to 2100 there; ValueError otherwise."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time must be in the years 2000 to 2100") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError("time must be in the years 2000 to 2100")
    return utc


# JSON Schema has no range for a date-time; `formatMinimum`/`formatMaximum` (understood by ajv and
# other validators that know them, ignored by the rest) and the description state it.
ClientTime = Annotated[
    AwareDatetime,
    AfterValidator(in_utc_within_the_years_served),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "formatMinimum": "2000-01-01T00:00:00Z",
            "formatMaximum": "2100-12-31T23:59:59.999999Z",
            "description": "RFC 3339 with an offset; in UTC within the years 2000 to 2100.",
        }
    ),
]


def within(*, past: timedelta, future: timedelta) -> AfterValidator:
    """A validator for a `ClientTime` no more than `past` before now and no more than `future` after it."""

    def check(value: datetime) -> datetime:
        now = datetime.now(UTC)
        if value < now - past:
            raise ValueError(f"time must be at most {_span(past)} ago")
        if value > now + future:
            raise ValueError(f"time must be at most {_span(future)} ahead")
        return value

    return AfterValidator(check)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"
