"""Who may be offered which leg: each rule of the dispatch policy is one pure function."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from services.dispatcher.domain import welfare
from services.dispatcher.domain.errors import (
    DailyCapReached,
    InsuranceLapsed,
    RestOwed,
    VolunteerNotVetted,
    VolunteerOffDuty,
)
from services.dispatcher.domain.geo import SEARCH_RADIUS_M, haversine_m, vehicle_satisfies
from shared.errors import DomainError


@dataclass(frozen=True, slots=True)
class Volunteer:
    id: uuid.UUID
    organisation_id: uuid.UUID
    on_duty: bool
    insured: bool
    vehicle: str
    capacity_kg: float
    skills: frozenset[str]
    languages: frozenset[str]
    max_active_legs: int
    active_legs: int
    live_offers: int
    lat: float | None
    lon: float | None
    location_at: datetime | None
    duty_started_at: datetime | None
    rest_until: datetime | None
    legs_done_today: int = 0
    # The full duty record (counters and local days) when known; else one built from the fields above.
    duty: welfare.DutyRecord | None = None
    # The last day their insurance covers, in `Policy.local_time_zone`; None: no end date.
    insured_until: date | None = None
    # An operator approved them (identity, insurance, training); False while pending or once rejected.
    vetted: bool = True


@dataclass(frozen=True)
class Leg:
    id: uuid.UUID
    task_id: uuid.UUID
    organisation_id: uuid.UUID
    priority: str
    pickup_lat: float
    pickup_lon: float
    vehicle: str | None
    weight_kg: float
    skills: frozenset[str]
    languages: frozenset[str]
    vulnerable: bool
    waiting_s: float = 0.0
    rejected_by: frozenset[uuid.UUID] = field(default_factory=frozenset)
    kind: str = "errand"
    # Where it goes (None: not known; a route then sees it dropped off where it is picked up), when
    # it is ready for pickup and when it must be delivered by, in POSIX seconds (routes plan on these).
    dropoff_lat: float | None = None
    dropoff_lon: float | None = None
    ready_s: float = -math.inf
    due_s: float = math.inf


# The time zone of `Settings.local_time_zone`'s default: one zone object shared by every policy.
LOCAL_TIME_ZONE = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Policy:
    location_max_age: timedelta = timedelta(minutes=15)
    # The shift cap and its rest, the daily caps, and the time zone whose midnight ends a day.
    welfare_limits: welfare.Limits = field(default_factory=welfare.Limits)
    radius_widening: float = 1.0
    # While a leg waits, its search radius grows by `widen_factor` every `widen_step_s`, up to `widen_max`.
    widen_step_s: float = 60.0
    widen_factor: float = 0.5
    widen_max: float = 3.0
    # Where calendar days (an insurance's last day) begin and end.
    local_time_zone: tzinfo = LOCAL_TIME_ZONE
    # Routine legs leave this share of an organisation's cars and vans on duty idle, for urgent and
    # critical legs still to come; a routine leg that has waited `reserve_wait_s` may take them too.
    reserve_share: float = 0.1
    reserve_wait_s: float = 600.0


def local_day(now: datetime, zone: tzinfo) -> date:
    """The calendar day `now` falls on in `zone`."""
    return now.astimezone(zone).date()


def covered(*, insured: bool, insured_until: date | None, day: date) -> bool:
    """Insurance declared, and its last day (if it has one) is not before `day`."""
    return insured and (insured_until is None or insured_until >= day)


def lapsing_within(today: date, days: int) -> tuple[date, date]:
    """The first and last of the last covered days of insurance that lapses in the next `days` days.

    Cover whose last day is today lapses tomorrow; cover lapsing on the `days`-th day from today
    ends the day before. Cover already lapsed is not among them.
    """
    return today, today + timedelta(days=days - 1)


def widen_search_radius(waiting_s: float, policy: Policy) -> float:
    """The multiple of a vehicle's base radius a leg that has waited `waiting_s` may search."""
    steps = max(0, int(waiting_s // policy.widen_step_s))
    return policy.radius_widening * min(policy.widen_max, 1.0 + steps * policy.widen_factor)


def search_radius_m(vehicle: str, leg: Leg, policy: Policy) -> float:
    """How far a volunteer with `vehicle` may be from this leg's pickup, given how long it has waited."""
    return SEARCH_RADIUS_M[vehicle] * widen_search_radius(leg.waiting_s, policy)


def free_slots(v: Volunteer) -> int:
    """How many more legs the volunteer may be offered before reaching their limit."""
    return v.max_active_legs - v.active_legs - v.live_offers


def on_duty(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """Only volunteers who said they are working get offers."""
    return v.on_duty


def vetted(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """Only volunteers an operator approved are sent out: not those pending vetting, nor the rejected."""
    return v.vetted


def insured(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """Only insured volunteers are sent out, and only until their insurance's last day has passed."""
    if v.insured_until is None:  # most have no end date: no calendar arithmetic per round for them
        return v.insured
    return covered(
        insured=v.insured, insured_until=v.insured_until, day=local_day(now, policy.local_time_zone)
    )


def has_free_slot(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """Active legs plus open offers stay below the volunteer's own limit."""
    return free_slots(v) > 0


def duty_record(v: Volunteer) -> welfare.DutyRecord:
    """The volunteer's duty as the welfare rules read it."""
    if v.duty is not None:
        return v.duty
    return welfare.DutyRecord(duty_started_at=v.duty_started_at, rest_until=v.rest_until)


def rested(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """Inside the shift cap, and not inside the rest owed after it."""
    return not welfare.rest_owed(duty_record(v), now, policy.welfare_limits)


def within_daily_caps(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """Below today's caps on duty hours and on legs delivered (the day ends at local midnight)."""
    return welfare.daily_cap_reached(duty_record(v), now, policy.welfare_limits) is None


def fresh_location(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """We only dispatch someone whose whereabouts we know recently enough."""
    return v.location_at is not None and v.lat is not None and now - v.location_at <= policy.location_max_age


def same_organisation(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> bool:
    """Only the organisation that asked for the leg sends someone: nobody else may see its recipient."""
    return v.organisation_id == leg.organisation_id


def equipped(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> bool:
    """The right vehicle, enough carrying capacity, and every skill the leg needs."""
    return (
        vehicle_satisfies(v.vehicle, leg.vehicle)
        and v.capacity_kg >= leg.weight_kg
        and leg.skills <= v.skills
    )


def speaks_the_language(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> bool:
    """Every language the leg needs (the drop-off's language counts)."""
    return leg.languages <= v.languages


def not_rejected(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> bool:
    """A volunteer who declined this leg or let its offer expire is not asked again."""
    return v.id not in leg.rejected_by


def within_radius(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> bool:
    """Close enough to the pickup for their vehicle (the radius widens while a leg waits)."""
    if v.lat is None or v.lon is None:
        return False
    return haversine_m(v.lat, v.lon, leg.pickup_lat, leg.pickup_lon) <= search_radius_m(
        v.vehicle, leg, policy
    )


VolunteerRule = Callable[[Volunteer, datetime, Policy], bool]
PairRule = Callable[[Volunteer, Leg, datetime, Policy], bool]

# Rules about the volunteer alone (whatever the leg) and rules about the pairing.
VOLUNTEER_RULES: tuple[VolunteerRule, ...] = (
    vetted,
    on_duty,
    insured,
    has_free_slot,
    rested,
    within_daily_caps,
    fresh_location,
)
PAIR_RULES: tuple[PairRule, ...] = (
    same_organisation,
    equipped,
    speaks_the_language,
    not_rejected,
    within_radius,
)


# The volunteer-only rules an operator's hand assignment must respect too, unless they override them
# with a reason: the very functions the matcher asks, so the two never disagree. Where the volunteer
# is and how many legs they carry are the operator's call (the limit is checked by `leg.assign`).
HAND_ASSIGNMENT_RULES: tuple[VolunteerRule, ...] = (vetted, on_duty, insured, rested, within_daily_caps)


def hand_assignment_refusals(v: Volunteer, now: datetime, policy: Policy) -> list[DomainError]:
    """Why an operator may not give this volunteer a leg now without an override; empty when they may.

    One error per rule broken, in the order of `HAND_ASSIGNMENT_RULES`.
    """
    refusals: list[DomainError] = []
    for rule in HAND_ASSIGNMENT_RULES:
        if not rule(v, now, policy):
            refusals.append(_hand_refusal(rule, v, now, policy))
    return refusals


def ensure_may_assign_by_hand(v: Volunteer, now: datetime, policy: Policy, *, overridden: bool) -> None:
    """Unless `overridden`, refuse with the first of `hand_assignment_refusals`, its message naming all.

    No override sends a volunteer an operator has not approved (pending vetting, or rejected).
    """
    if not vetted(v, now, policy):
        raise _hand_refusal(vetted, v, now, policy)
    if overridden:
        return
    refusals = hand_assignment_refusals(v, now, policy)
    if refusals:
        reasons = " ".join(refusal.message for refusal in refusals)
        raise type(refusals[0])(f"{reasons} Send an override with a reason to assign them all the same.")


def _hand_refusal(rule: VolunteerRule, v: Volunteer, now: datetime, policy: Policy) -> DomainError:
    """The domain error saying, for an operator, why `rule` refuses the volunteer."""
    limits = policy.welfare_limits
    if rule is vetted:
        return VolunteerNotVetted("The volunteer has not been approved by an operator.")
    if rule is on_duty:
        return VolunteerOffDuty("The volunteer is off duty.")
    if rule is insured:
        lapsed = (
            f"The volunteer's insurance ended on {v.insured_until.isoformat()}."
            if v.insured and v.insured_until is not None
            else "The volunteer is not insured."
        )
        return InsuranceLapsed(lapsed)
    if rule is rested:
        until = welfare.shift_state(duty_record(v), now, limits).rest_owed_until
        when = f" until {until.isoformat()}" if until is not None else ""
        return RestOwed(f"The volunteer is owed rest{when}.")
    cap = welfare.daily_cap_reached(duty_record(v), now, limits)
    which = (
        f"{limits.daily_max_legs} legs"
        if cap == "daily_legs_cap"
        else f"{limits.daily_max_on_duty.total_seconds() / 3600:g} h on duty"
    )
    return DailyCapReached(f"The volunteer reached today's cap of {which}.")


def broken_rules(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> list[str]:
    """Names of the rules a pairing breaks; empty when the volunteer is eligible."""
    return [rule.__name__ for rule in VOLUNTEER_RULES if not rule(v, now, policy)] + [
        rule.__name__ for rule in PAIR_RULES if not rule(v, leg, now, policy)
    ]


def is_eligible(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> bool:
    """All rules hold for this volunteer and this leg."""
    return is_available(v, now, policy) and suits(v, leg, now, policy)


# Plain loops below: a matching round asks these of every volunteer on duty, and `all()` over a
# generator costs about half as much again.
def is_available(v: Volunteer, now: datetime, policy: Policy) -> bool:
    """The volunteer-only rules hold: worth looking for legs for at all."""
    for rule in VOLUNTEER_RULES:  # noqa: SIM110 - see above
        if not rule(v, now, policy):
            return False
    return True


def available_until(v: Volunteer, now: datetime, policy: Policy) -> datetime | None:
    """Until when the volunteer-only rules hold if nothing about the volunteer changes; None when
    they do not hold at `now`.

    The earliest moment a rule could stop holding with time alone: the shift cap or the day's duty
    cap reached (`welfare.shift_end`), the location growing stale, or local midnight (the day's
    counts and insurance's last day turn over then); they hold at every moment before it. Every
    other rule depends on the volunteer's record alone, so the answer stands until the record
    changes (`matching.Pool` asks again only then).
    """
    if not is_available(v, now, policy):
        return None
    assert v.location_at is not None  # `fresh_location` holds
    limits = policy.welfare_limits
    until = min(
        welfare.shift_end(duty_record(v), now, limits),
        v.location_at + policy.location_max_age,
        welfare.next_midnight(now, limits.time_zone),
    )
    if v.insured_until is not None:
        until = min(until, welfare.next_midnight(now, policy.local_time_zone))
    return until


def suits(v: Volunteer, leg: Leg, now: datetime, policy: Policy) -> bool:
    """The pairing rules hold, for a volunteer already known to be available."""
    for rule in PAIR_RULES:  # noqa: SIM110 - see above
        if not rule(v, leg, now, policy):
            return False
    return True


def escalation_reason(
    *,
    waiting_s: float,
    deliver_by: datetime | None,
    now: datetime,
    wait_limit_s: float,
    deadline_margin_s: float,
) -> str | None:
    """Why an unplaced leg must be escalated to a human now, or None while it may still wait."""
    if deliver_by is not None and (deliver_by - now).total_seconds() <= deadline_margin_s:
        return "deadline_near"
    if waiting_s >= wait_limit_s:
        return "waited_too_long"
    return None


def speaks_dropoff_language(volunteer_languages: Iterable[str], details: Mapping[str, Any]) -> bool:
    """Whether a volunteer speaks the language of a leg's drop-off (its recipient's)."""
    dropoff = details.get("dropoff") or {}
    return str(dropoff.get("language") or "zh") in set(volunteer_languages)
