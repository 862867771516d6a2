"""The welfare rules on their own: the shift clock, the rest it owes, the daily caps and the local day."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain import welfare as w

LIMITS = w.Limits()  # 4 h shift, 30 min rest, 10 h and 30 legs a day, Asia/Shanghai
# 10:00 in Shanghai: far from local midnight (16:00 UTC).
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
OFF = w.DutyRecord(duty_started_at=None)


def on_for(record: w.DutyRecord, start: datetime, length: timedelta) -> tuple[w.DutyRecord, datetime]:
    """On duty at `start` for `length`, then off: the record after, and the time they went off."""
    assert w.refusal(record, start, LIMITS) is None
    end = start + length
    return w.go_off_duty(w.go_on_duty(record, start, LIMITS), end, LIMITS), end


def test_a_short_break_does_not_reset_the_shift_clock() -> None:
    record, off_at = on_for(OFF, T0, timedelta(hours=3, minutes=59))
    back = off_at + timedelta(minutes=5)
    assert w.refusal(record, back, LIMITS) is None
    record = w.go_on_duty(record, back, LIMITS)
    assert w.shift_state(record, back, LIMITS).on_duty == timedelta(hours=3, minutes=59)
    one_minute_later = back + timedelta(minutes=1)
    assert w.shift_state(record, one_minute_later, LIMITS) == w.ShiftState(
        on_duty=LIMITS.shift_max_on_duty, rest_owed_until=one_minute_later + LIMITS.rest
    )


def test_a_full_rest_off_duty_resets_the_shift_clock() -> None:
    record, off_at = on_for(OFF, T0, timedelta(hours=3, minutes=59))
    back = off_at + LIMITS.rest
    record = w.go_on_duty(record, back, LIMITS)
    assert w.shift_state(record, back + timedelta(hours=1), LIMITS).on_duty == timedelta(hours=1)


def test_rest_is_owed_after_the_shift_cap_until_the_rest_has_run() -> None:
    record, off_at = on_for(OFF, T0, timedelta(hours=4, minutes=10))
    cap_reached = T0 + LIMITS.shift_max_on_duty
    assert record.rest_until == cap_reached + LIMITS.rest
    refused = w.refusal(record, off_at + timedelta(minutes=1), LIMITS)
    assert refused == w.Refusal("rest_owed", cap_reached + LIMITS.rest)
    assert w.refusal(record, cap_reached + LIMITS.rest, LIMITS) is None
    again = w.go_on_duty(record, cap_reached + LIMITS.rest, LIMITS)
    assert w.shift_state(again, cap_reached + LIMITS.rest, LIMITS).on_duty == timedelta(0)


def test_staying_on_duty_without_offers_for_the_rest_resets_the_clock() -> None:
    record = w.go_on_duty(OFF, T0, LIMITS)
    cap_reached = T0 + LIMITS.shift_max_on_duty
    assert w.shift_state(record, cap_reached, LIMITS).rest_owed_until == cap_reached + LIMITS.rest
    after_rest = cap_reached + LIMITS.rest + timedelta(minutes=10)
    assert w.shift_state(record, after_rest, LIMITS) == w.ShiftState(timedelta(minutes=10), None)


def test_going_off_during_an_owed_rest_keeps_its_end() -> None:
    record = w.go_on_duty(OFF, T0, LIMITS)
    cap_reached = T0 + LIMITS.shift_max_on_duty
    record = w.go_off_duty(record, cap_reached + timedelta(minutes=20), LIMITS)
    assert record.rest_until == cap_reached + LIMITS.rest
    assert w.refusal(record, cap_reached + timedelta(minutes=29), LIMITS) is not None
    assert w.refusal(record, cap_reached + LIMITS.rest, LIMITS) is None


def test_the_daily_duty_cap_refuses_until_local_midnight() -> None:
    record = OFF
    start = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    for _ in range(3):  # three shifts of 3 h 20 min with a rest between: 10 h by 19:30 local
        record, off_at = on_for(record, start, timedelta(hours=3, minutes=20))
        start = off_at + LIMITS.rest
    assert w.duty_today(record, start, LIMITS) == timedelta(hours=10)
    local_midnight = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert w.refusal(record, start, LIMITS) == w.Refusal("daily_duty_cap", local_midnight)
    assert w.refusal(record, local_midnight, LIMITS) is None


def test_duty_across_local_midnight_counts_on_the_day_it_was_done() -> None:
    start = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    record = w.go_on_duty(OFF, start, LIMITS)
    after_midnight = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # 01:00 the next day
    assert w.duty_today(record, after_midnight, LIMITS) == timedelta(hours=1)
    record = w.go_off_duty(record, after_midnight, LIMITS)
    assert record.duty_day == date(2026, 12, 2)
    assert record.duty_today == timedelta(hours=1)


def test_the_legs_cap_refuses_and_local_midnight_resets_the_count() -> None:
    before = datetime(2026, 12, 1, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    record = w.DutyRecord(duty_started_at=None, legs_day=w.local_day(before, LIMITS), legs_done=30)
    assert w.legs_today(record, before, LIMITS) == 30
    midnight = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert w.refusal(record, before, LIMITS) == w.Refusal("daily_legs_cap", midnight)
    assert w.local_day(midnight, LIMITS) == date(2026, 12, 2)
    assert w.legs_today(record, midnight, LIMITS) == 0
    assert w.refusal(record, midnight, LIMITS) is None


def test_utc_midnight_does_not_end_the_local_day() -> None:
    evening = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 07:00 on the 2nd in Shanghai
    record = w.DutyRecord(duty_started_at=None, legs_day=date(2026, 12, 2), legs_done=30)
    assert w.legs_today(record, evening + timedelta(hours=2), LIMITS) == 30


def volunteer(duty: w.DutyRecord) -> e.Volunteer:
    return e.Volunteer(
        id=uuid.uuid4(),
        organisation_id=uuid.uuid4(),
        on_duty=True,
        insured=True,
        vehicle="bicycle",
        capacity_kg=20.0,
        skills=frozenset(),
        languages=frozenset(),
        max_active_legs=2,
        active_legs=0,
        live_offers=0,
        lat=0.0,
        lon=0.0,
        location_at=T0,
        duty_started_at=duty.duty_started_at,
        rest_until=duty.rest_until,
        duty=duty,
    )


def test_no_offers_while_rest_is_owed_after_a_short_break() -> None:
    record, off_at = on_for(OFF, T0, timedelta(hours=3, minutes=59))
    back = off_at + timedelta(minutes=5)
    v = volunteer(w.go_on_duty(record, back, LIMITS))
    policy = e.Policy(welfare_limits=LIMITS)
    assert e.rested(v, back, policy)
    assert not e.rested(v, back + timedelta(minutes=1), policy)


def test_no_offers_once_a_daily_cap_is_reached() -> None:
    policy = e.Policy(welfare_limits=LIMITS)
    now = T0 + timedelta(minutes=1)
    capped = w.DutyRecord(duty_started_at=T0, legs_day=w.local_day(T0, LIMITS), legs_done=30)
    assert e.within_daily_caps(volunteer(replace(capped, legs_done=29)), now, policy)
    assert not e.within_daily_caps(volunteer(capped), now, policy)
    long_day = w.DutyRecord(
        duty_started_at=T0, duty_day=w.local_day(T0, LIMITS), duty_today=timedelta(hours=9, minutes=59)
    )
    assert e.within_daily_caps(volunteer(long_day), T0 + timedelta(seconds=59), policy)
    assert not e.within_daily_caps(volunteer(long_day), now, policy)


# --- when the shift ends: a route running past it is not offered


def _shift_end_the_long_way(record: w.DutyRecord, now: datetime, limits: w.Limits) -> datetime:
    left = limits.shift_max_on_duty - w.shift_state(record, now, limits).on_duty
    day_left = limits.daily_max_on_duty - w.duty_today(record, now, limits)
    return now + max(timedelta(0), min(left, day_left))


def test_the_shift_ends_at_the_cap_or_at_the_days_cap_whichever_comes_first() -> None:
    limits = w.Limits()
    record = w.DutyRecord(duty_started_at=T0 - timedelta(hours=1), duty_day=w.local_day(T0, limits))
    assert w.shift_end(record, T0, limits) == T0 + timedelta(hours=3)
    tired = replace(record, duty_today=timedelta(hours=8, minutes=30))
    assert w.shift_end(tired, T0, limits) == T0 + timedelta(minutes=30)
    resting = replace(record, rest_until=T0 + timedelta(minutes=10))
    assert w.shift_end(resting, T0, limits) == _shift_end_the_long_way(resting, T0, limits)


@settings(max_examples=300, deadline=None)
@given(
    started_min=st.one_of(st.none(), st.integers(0, 600)),
    shift_min=st.integers(0, 300),
    today_min=st.integers(0, 700),
    rest_min=st.one_of(st.none(), st.integers(-60, 60)),
    yesterday=st.booleans(),
)
def test_the_quick_shift_end_is_the_shift_clocks(
    started_min: int | None, shift_min: int, today_min: int, rest_min: int | None, yesterday: bool
) -> None:
    limits = w.Limits()
    day = w.local_day(T0, limits) - timedelta(days=1 if yesterday else 0)
    record = w.DutyRecord(
        duty_started_at=None if started_min is None else T0 - timedelta(minutes=started_min),
        shift_duty=timedelta(minutes=shift_min),
        rest_until=None if rest_min is None else T0 + timedelta(minutes=rest_min),
        duty_day=day,
        duty_today=timedelta(minutes=today_min),
    )
    assert w.shift_end(record, T0, limits) == _shift_end_the_long_way(record, T0, limits)
