"""Times clients send: bounded to the years served, in UTC, and for a location fix, recent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.dispatcher.entrypoints.schemas import LocationIn
from services.notifier.entrypoints.schemas import DeliveriesQuery
from shared.http import validation_problem
from shared.times import ClientTime


class Stamped(BaseModel):
    at: ClientTime


def refused(model: type[BaseModel], value: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(value)
    return [error["field"] for error in validation_problem(caught.value).errors or []]


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+23:59",  # year 0 in UTC: PostgreSQL's driver cannot send it
        "9999-12-31T23:59:59-23:59",  # year 10000 in UTC: Python cannot hold it
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T00:30:00+01:00",  # 1999 in UTC
        "2101-01-01T00:00:00Z",
        "2100-12-31T23:30:00-01:00",  # 2101 in UTC
        "2026-06-01T10:00:00",  # no offset
    ],
)
def test_times_outside_the_years_served_or_without_an_offset_are_refused(at: str) -> None:
    assert refused(Stamped, {"at": at}) == ["$.at"]


@pytest.mark.parametrize(
    ("at", "utc"),
    [
        ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2000-01-01T23:59:00+23:59", datetime(2000, 1, 1, 0, 0, tzinfo=UTC)),
        ("2100-12-31T23:59:59.999999Z", datetime(2100, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2026-06-01T08:00:00-02:30", datetime(2026, 6, 1, 10, 30, tzinfo=UTC)),
    ],
)
def test_times_within_the_years_served_are_taken_in_utc(at: str, utc: datetime) -> None:
    taken = Stamped.model_validate({"at": at}).at
    assert taken == utc
    assert taken.utcoffset() == timedelta(0)


def fix(at: datetime | str) -> dict[str, Any]:
    return {"lat": 1, "lon": 2, "at": at if isinstance(at, str) else at.isoformat()}


def test_a_fix_more_than_a_day_old_or_minutes_ahead_is_refused_naming_the_field() -> None:
    now = datetime.now(UTC)
    assert refused(LocationIn, fix(now - timedelta(days=1, minutes=1))) == ["$.at"]
    assert refused(LocationIn, fix(now + timedelta(minutes=6))) == ["$.at"]
    assert refused(LocationIn, fix("0001-01-01T00:00:00+23:59")) == ["$.at"]


def test_a_recent_fix_and_one_from_a_clock_slightly_ahead_are_taken() -> None:
    now = datetime.now(UTC)
    for at in (now - timedelta(hours=23), now + timedelta(minutes=4), now.astimezone()):
        assert LocationIn.model_validate(fix(at)).at == at
    assert LocationIn.model_validate({"lat": 1, "lon": 2}).at is None


def test_the_deliveries_cursor_is_a_bounded_time_in_utc() -> None:
    assert refused(DeliveriesQuery, {"cursor": "9999-12-31T23:59:59-23:59"}) == ["$.cursor"]
    taken = DeliveriesQuery.model_validate({"cursor": "2026-06-01T12:00:00+02:00"}).cursor
    assert taken == datetime(2026, 6, 1, 10, tzinfo=UTC) and taken.utcoffset() == timedelta(0)
