"""When a schedule's occurrences fall: local wall-clock rules, month ends, skipped dates, refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.intake.domain.schedules import (
    BAD_RULE,
    NO_OCCURRENCE,
    TOO_FREQUENT,
    UNKNOWN_ZONE,
    Recurrence,
    RuleError,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_daily_lunch_in_shanghai_is_at_0330_utc_every_day_all_year() -> None:
    # Asia/Shanghai has no daylight saving: 11:30 local is 03:30 UTC in winter and summer alike.
    lunch = Recurrence("FREQ=DAILY", datetime(2026, 1, 1, 11, 30), "Asia/Shanghai")
    for month in (1, 3, 7, 11):
        found = lunch.next(utc(2026, month, 10), 3)
        assert found == [utc(2026, month, day, 3, 30) for day in (10, 11, 12)]
        assert lunch.local(found[0]).hour == 11


def test_a_wall_clock_rule_follows_daylight_saving_where_there_is_some() -> None:
    lunch = Recurrence("RRULE:FREQ=DAILY", datetime(2026, 1, 1, 11, 30), "Europe/Berlin")
    assert lunch.next(utc(2026, 1, 10), 1) == [utc(2026, 1, 10, 10, 30)]
    assert lunch.next(utc(2026, 7, 10), 1) == [utc(2026, 7, 10, 9, 30)]


def test_twice_a_week_supply_run() -> None:
    run = Recurrence("FREQ=WEEKLY;BYDAY=MO,TH", datetime(2026, 12, 1, 8, 0), "Asia/Shanghai")
    found = run.next(utc(2026, 12, 6), 4)  # a Sunday
    assert [run.local(at).date() for at in found] == [
        date(2026, 12, 7),
        date(2026, 12, 10),
        date(2026, 12, 14),
        date(2026, 12, 17),
    ]


def test_last_day_of_each_month() -> None:
    month_end = Recurrence("FREQ=MONTHLY;BYMONTHDAY=-1", datetime(2026, 1, 1, 9, 0), "Asia/Shanghai")
    found = month_end.next(utc(2026, 1, 1), 4)
    assert [month_end.local(at).date() for at in found] == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    ]
    leap = month_end.next(utc(2028, 2, 1), 1)
    assert month_end.local(leap[0]).date() == date(2028, 2, 29)


def test_the_31st_occurs_only_in_months_that_have_one() -> None:
    # RFC 5545: an invalid date (30 February, 31 April) is ignored, not moved.
    the_31st = Recurrence("FREQ=MONTHLY;BYMONTHDAY=31", datetime(2026, 1, 1, 9, 0), "Asia/Shanghai")
    found = the_31st.next(utc(2026, 1, 1), 4)
    assert [the_31st.local(at).date() for at in found] == [
        date(2026, 1, 31),
        date(2026, 3, 31),
        date(2026, 5, 31),
        date(2026, 7, 31),
    ]


def test_skipped_dates_make_nothing_that_day_only() -> None:
    lunch = Recurrence(
        "FREQ=DAILY", datetime(2026, 1, 1, 11, 30), "Asia/Shanghai", frozenset({date(2026, 12, 8)})
    )
    found = lunch.next(utc(2026, 12, 6, 12), 3)
    assert [lunch.local(at).date() for at in found] == [
        date(2026, 12, 7),
        date(2026, 12, 9),
        date(2026, 12, 10),
    ]


def test_between_is_after_exclusive_until_inclusive_and_bounded() -> None:
    lunch = Recurrence("FREQ=DAILY", datetime(2026, 1, 1, 11, 30), "Asia/Shanghai")
    assert lunch.between(utc(2026, 12, 7, 3, 30), utc(2026, 12, 9, 3, 30), limit=10) == [
        utc(2026, 12, 8, 3, 30),
        utc(2026, 12, 9, 3, 30),
    ]
    assert len(lunch.between(utc(2026, 1, 1), utc(2027, 1, 1), limit=5)) == 5


def test_a_rule_with_an_end_stops() -> None:
    three = Recurrence("FREQ=DAILY;COUNT=3", datetime(2026, 12, 1, 11, 30), "Asia/Shanghai")
    assert len(three.next(utc(2026, 11, 1), 10)) == 3
    assert three.next(utc(2026, 12, 3, 4), 10) == []
    until = Recurrence("FREQ=DAILY;UNTIL=20261205T235959", datetime(2026, 12, 1, 11, 30), "Asia/Shanghai")
    assert len(until.next(utc(2026, 11, 1), 10)) == 5


def test_occurrences_before_the_start_do_not_exist() -> None:
    later = Recurrence("FREQ=DAILY", datetime(2027, 1, 1, 11, 30), "Asia/Shanghai")
    assert later.next(utc(2026, 12, 6), 1) == [utc(2027, 1, 1, 3, 30)]


@pytest.mark.parametrize(
    ("rule", "zone", "field", "message"),
    [
        ("FREQ=SOMETIMES", "Asia/Shanghai", "$.rrule", BAD_RULE),
        ("not a rule", "Asia/Shanghai", "$.rrule", BAD_RULE),
        ("FREQ=DAILY\nEXDATE:20261207T113000", "Asia/Shanghai", "$.rrule", BAD_RULE),
        ("DTSTART:20261207T113000", "Asia/Shanghai", "$.rrule", BAD_RULE),
        ("FREQ=DAILY;UNTIL=20261231T000000Z", "Asia/Shanghai", "$.rrule", BAD_RULE),
        ("FREQ=MINUTELY;INTERVAL=5", "Asia/Shanghai", "$.rrule", TOO_FREQUENT),
        ("FREQ=SECONDLY;INTERVAL=3600", "Asia/Shanghai", "$.rrule", TOO_FREQUENT),
        ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0,5", "Asia/Shanghai", "$.rrule", TOO_FREQUENT),
        ("FREQ=DAILY;COUNT=0", "Asia/Shanghai", "$.rrule", NO_OCCURRENCE),
        ("FREQ=DAILY", "Mars/Olympus_Mons", "$.time_zone", UNKNOWN_ZONE),
    ],
)
def test_refused_rules_name_their_field(rule: str, zone: str, field: str, message: str) -> None:
    with pytest.raises(RuleError) as refused:
        Recurrence(rule, datetime(2026, 12, 7, 11, 30), zone).check()
    assert (refused.value.field, refused.value.message) == (field, message)


def test_every_ten_minutes_is_allowed() -> None:
    Recurrence("FREQ=MINUTELY;INTERVAL=10", datetime(2026, 12, 7, 11, 30), "Asia/Shanghai").check()
    Recurrence("FREQ=HOURLY", datetime(2026, 12, 7, 11, 30), "Asia/Shanghai").check()


def test_the_next_occurrence_after_an_occurrence_is_the_following_one() -> None:
    lunch = Recurrence("FREQ=DAILY", datetime(2026, 1, 1, 11, 30), "Asia/Shanghai")
    first = lunch.next(utc(2026, 12, 6), 1)[0]
    assert lunch.next(first, 1) == [first + timedelta(days=1)]
