"""A volunteer's welfare limits: the shift clock, the rest it owes, and the daily caps.

The shift clock counts duty since the last rest. A rest is `rest` without duty: off duty, or on
duty with offers withheld because rest is owed. Going off duty for less than that does not reset
the clock. Daily caps (hours on duty, legs delivered) count per local day, reset at local midnight.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

# What stops a volunteer working: the rest owed after a shift, or one of the day's caps.
Reason = Literal["rest_owed", "daily_duty_cap", "daily_legs_cap"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The welfare settings, in the domain's terms."""

    shift_max_on_duty: timedelta = timedelta(hours=4)
    rest: timedelta = timedelta(minutes=30)
    daily_max_on_duty: timedelta = timedelta(hours=10)
    daily_max_legs: int = 30
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))


@dataclass(frozen=True, slots=True)
class DutyRecord:
    """What is stored about a volunteer's duty: the current stretch and the counters before it."""

    duty_started_at: datetime | None  # on duty since then; None while off duty
    shift_duty: timedelta = timedelta(0)  # duty in the current shift before `duty_started_at`
    off_duty_at: datetime | None = None  # when they last went off duty
    rest_until: datetime | None = None  # rest owed until then
    duty_day: date | None = None  # the local day `duty_today` counts
    duty_today: timedelta = timedelta(0)  # duty that day before `duty_started_at`
    legs_day: date | None = None  # the local day `legs_done` counts
    legs_done: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the volunteer may not work now, and when they may again."""

    reason: Reason
    until: datetime


def local_day(now: datetime, limits: Limits) -> date:
    """The calendar day `now` falls on where the volunteers work."""
    return _local_day_start(now, limits.time_zone)[0]


# A matching round asks these of every volunteer on duty with one `now`: worked out once per round.
@lru_cache(maxsize=64)
def _local_day_start(now: datetime, time_zone: tzinfo) -> tuple[date, datetime]:
    day = now.astimezone(time_zone).date()
    return day, datetime.combine(day, time(0), tzinfo=time_zone)


@lru_cache(maxsize=64)
def next_midnight(now: datetime, time_zone: tzinfo) -> datetime:
    """The start of the day after `now`'s in `time_zone`, in UTC (aware times in one zone compare
    several times faster than across zones)."""
    tomorrow = _local_day_start(now, time_zone)[0] + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=time_zone).astimezone(UTC)


def _carried_shift(record: DutyRecord, now: datetime, limits: Limits) -> timedelta:
    """Shift duty carried into the current stretch (or into now, off duty): zero after a rest."""
    if record.rest_until is not None and record.rest_until <= now:
        return timedelta(0)
    if record.duty_started_at is None:
        rested_off = record.off_duty_at is not None and now - record.off_duty_at >= limits.rest
        return timedelta(0) if rested_off else record.shift_duty
    return record.shift_duty


@dataclass(frozen=True, slots=True)
class ShiftState:
    """The shift clock at one moment, and the rest owed then (None when none is)."""

    on_duty: timedelta
    rest_owed_until: datetime | None


def shift_state(record: DutyRecord, now: datetime, limits: Limits) -> ShiftState:
    """The shift clock at `now`, and until when rest is owed.

    On duty past the cap, offers stop and the rest runs; once it has run the clock starts again.
    """
    if record.rest_until is not None and now < record.rest_until:
        return ShiftState(on_duty=timedelta(0), rest_owed_until=record.rest_until)
    carried = _carried_shift(record, now, limits)
    if record.duty_started_at is None:
        return ShiftState(on_duty=carried, rest_owed_until=None)
    worked = carried + (now - record.duty_started_at)
    cap = limits.shift_max_on_duty
    if worked < cap:
        return ShiftState(on_duty=worked, rest_owed_until=None)
    since_cap = (worked - cap) % (cap + limits.rest)
    if since_cap < limits.rest:
        return ShiftState(on_duty=cap, rest_owed_until=now + (limits.rest - since_cap))
    return ShiftState(on_duty=since_cap - limits.rest, rest_owed_until=None)


def shift_end(record: DutyRecord, now: datetime, limits: Limits) -> datetime:
    """When the volunteer must stop working if they carry on from `now`: the end of the shift or of
    the day's time on duty, whichever comes first (a route running past it is not offered)."""
    if record.rest_until is None and record.duty_started_at is not None:
        # The usual case, quick: on duty inside the cap, and the day's cap further off than the
        # shift's even if all of today's duty counted (`duty_today` is never more).
        stretch = now - record.duty_started_at
        left = limits.shift_max_on_duty - record.shift_duty - stretch
        if left > timedelta(0) and record.duty_today + stretch + left <= limits.daily_max_on_duty:
            return now + left
    left = limits.shift_max_on_duty - shift_state(record, now, limits).on_duty
    day_left = limits.daily_max_on_duty - duty_today(record, now, limits)
    return now + max(timedelta(0), min(left, day_left))


def rest_owed(record: DutyRecord, now: datetime, limits: Limits) -> bool:
    """Whether rest is owed at `now`: `shift_state`'s answer, quicker for the many well inside the cap."""
    if record.rest_until is not None and now < record.rest_until:
        return True
    if record.duty_started_at is None:
        return False
    if record.shift_duty + (now - record.duty_started_at) < limits.shift_max_on_duty:
        return False
    return shift_state(record, now, limits).rest_owed_until is not None


def duty_today(record: DutyRecord, now: datetime, limits: Limits) -> timedelta:
    """Time on duty since local midnight, the current stretch included."""
    counted = record.duty_today if record.duty_day == local_day(now, limits) else timedelta(0)
    if record.duty_started_at is not None:
        counted += now - max(record.duty_started_at, _local_day_start(now, limits.time_zone)[1])
    return counted


def legs_today(record: DutyRecord, now: datetime, limits: Limits) -> int:
    """Legs delivered since local midnight."""
    return record.legs_done if record.legs_day == local_day(now, limits) else 0


def refusal(record: DutyRecord, now: datetime, limits: Limits) -> Refusal | None:
    """Why the volunteer may not be on duty taking offers at `now`; None when they may."""
    owed = shift_state(record, now, limits).rest_owed_until
    if owed is not None:
        return Refusal("rest_owed", owed)
    cap = daily_cap_reached(record, now, limits)
    return None if cap is None else Refusal(cap, next_midnight(now, limits.time_zone))


def daily_cap_reached(record: DutyRecord, now: datetime, limits: Limits) -> Reason | None:
    """Which of today's caps is reached; None while neither is."""
    # The counts stored bound today's from above: only a volunteer near a cap costs the local day.
    most = record.duty_today + (now - record.duty_started_at if record.duty_started_at else timedelta(0))
    if most >= limits.daily_max_on_duty and duty_today(record, now, limits) >= limits.daily_max_on_duty:
        return "daily_duty_cap"
    if record.legs_done >= limits.daily_max_legs and legs_today(record, now, limits) >= limits.daily_max_legs:
        return "daily_legs_cap"
    return None


@dataclass(frozen=True, slots=True)
class Status:
    """What the volunteer and their operator see of the limits at one moment."""

    shift: ShiftState
    duty_today: timedelta
    legs_today: int
    refusal: Refusal | None


def status(record: DutyRecord, now: datetime, limits: Limits) -> Status:
    """The shift clock, the day's counts, and what (if anything) stops the volunteer working now."""
    return Status(
        shift=shift_state(record, now, limits),
        duty_today=duty_today(record, now, limits),
        legs_today=legs_today(record, now, limits),
        refusal=refusal(record, now, limits),
    )


def go_on_duty(record: DutyRecord, now: datetime, limits: Limits) -> DutyRecord:
    """The record once the volunteer goes on duty: the clock carries on unless they rested.

    It refuses nothing: the caller asks `refusal` first.
    """
    if record.duty_started_at is not None:
        return record
    return replace(
        record,
        duty_started_at=now,
        shift_duty=_carried_shift(record, now, limits),
        rest_until=None,
        duty_day=local_day(now, limits),
        duty_today=duty_today(record, now, limits),
    )


def go_off_duty(record: DutyRecord, now: datetime, limits: Limits) -> DutyRecord:
    """The record once the volunteer goes off duty: the stretch folded into the counters.

    Rest already owed stays owed until its end; otherwise the clock stops where it is.
    """
    if record.duty_started_at is None:
        return record
    state = shift_state(record, now, limits)
    return replace(
        record,
        duty_started_at=None,
        shift_duty=timedelta(0) if state.rest_owed_until is not None else state.on_duty,
        off_duty_at=now,
        rest_until=state.rest_owed_until,
        duty_day=local_day(now, limits),
        duty_today=duty_today(record, now, limits),
    )
