"""Each eligibility rule on its own: the pair passes every other rule, and this one decides."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain import welfare as w
from services.dispatcher.domain.geo import SEARCH_RADIUS_M

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ORGANISATION = uuid.UUID(int=1)
POLICY = e.Policy(widen_step_s=60.0, widen_factor=0.5, widen_max=3.0)


def volunteer(**changes: object) -> e.Volunteer:
    base = e.Volunteer(
        id=uuid.uuid4(),
        organisation_id=ORGANISATION,
        on_duty=True,
        insured=True,
        vehicle="bicycle",
        capacity_kg=20.0,
        skills=frozenset({"first_aid"}),
        languages=frozenset({"zh", "en"}),
        max_active_legs=2,
        active_legs=0,
        live_offers=0,
        lat=29.870,
        lon=121.550,
        location_at=NOW - timedelta(minutes=1),
        duty_started_at=NOW - timedelta(hours=1),
        rest_until=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def leg(**changes: object) -> e.Leg:
    base = e.Leg(
        id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        organisation_id=ORGANISATION,
        priority="routine",
        pickup_lat=29.875,
        pickup_lon=121.555,
        vehicle="bicycle",
        weight_kg=5.0,
        skills=frozenset({"first_aid"}),
        languages=frozenset({"en"}),
        vulnerable=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_baseline_pair_is_eligible() -> None:
    assert e.broken_rules(volunteer(), leg(), NOW, POLICY) == []


def test_off_duty_volunteer_is_not_offered_work() -> None:
    assert e.broken_rules(volunteer(on_duty=False), leg(), NOW, POLICY) == ["on_duty"]


def test_uninsured_volunteer_is_not_offered_work() -> None:
    assert e.broken_rules(volunteer(insured=False), leg(), NOW, POLICY) == ["insured"]


@pytest.mark.parametrize(
    ("insured_until", "ok"),
    [(None, True), (date(2026, 12, 1), True), (date(2027, 6, 30), True), (date(2026, 11, 30), False)],
)
def test_volunteer_whose_insurance_has_lapsed_is_not_offered_work(
    insured_until: date | None, ok: bool
) -> None:
    # NOW is 2026-12-01 17:00 in Shanghai: cover ending that day still holds, ending the day before does not.
    v = volunteer(insured_until=insured_until)
    assert e.broken_rules(v, leg(), NOW, POLICY) == ([] if ok else ["insured"])


def test_insurance_lapses_at_the_end_of_its_last_day_in_the_local_time_zone() -> None:
    late_evening_utc = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # already 2 December in Shanghai
    v = volunteer(
        insured_until=date(2026, 12, 1),
        location_at=late_evening_utc - timedelta(minutes=1),
        duty_started_at=late_evening_utc - timedelta(hours=1),
    )
    assert e.broken_rules(v, leg(), late_evening_utc, POLICY) == ["insured"]
    in_utc = replace(POLICY, local_time_zone=ZoneInfo("UTC"))
    assert e.broken_rules(v, leg(), late_evening_utc, in_utc) == []


def test_an_end_date_does_not_insure_a_volunteer_who_declared_no_insurance() -> None:
    v = volunteer(insured=False, insured_until=date(2027, 1, 1))
    assert e.broken_rules(v, leg(), NOW, POLICY) == ["insured"]


def test_insurance_lapsing_within_a_week_ends_today_or_on_one_of_the_next_six_days() -> None:
    assert e.lapsing_within(date(2026, 12, 1), 7) == (date(2026, 12, 1), date(2026, 12, 7))


@pytest.mark.parametrize(
    ("active", "offers", "ok"), [(1, 0, True), (2, 0, False), (1, 1, False), (0, 1, True)]
)
def test_active_legs_and_open_offers_count_against_the_limit(active: int, offers: int, ok: bool) -> None:
    v = volunteer(active_legs=active, live_offers=offers)
    assert e.has_free_slot(v, NOW, POLICY) is ok
    assert e.broken_rules(v, leg(), NOW, POLICY) == ([] if ok else ["has_free_slot"])


def test_volunteer_past_the_shift_cap_is_not_offered_work() -> None:
    cap = POLICY.welfare_limits.shift_max_on_duty
    v = volunteer(duty_started_at=NOW - cap - timedelta(seconds=1))
    assert e.broken_rules(v, leg(), NOW, POLICY) == ["rested"]
    assert e.rested(volunteer(duty_started_at=NOW - cap + timedelta(minutes=1)), NOW, POLICY)


def test_volunteer_inside_the_rest_period_is_not_offered_work_until_it_ends() -> None:
    v = volunteer(rest_until=NOW + timedelta(minutes=5), duty_started_at=NOW)
    assert e.broken_rules(v, leg(), NOW, POLICY) == ["rested"]
    assert e.rested(v, NOW + timedelta(minutes=5), POLICY)


def test_stale_or_missing_location_is_not_offered_work() -> None:
    stale = volunteer(location_at=NOW - POLICY.location_max_age - timedelta(seconds=1))
    assert e.broken_rules(stale, leg(), NOW, POLICY) == ["fresh_location"]
    assert "fresh_location" in e.broken_rules(volunteer(location_at=None), leg(), NOW, POLICY)


@settings(max_examples=400, deadline=None)
@given(
    hour=st.integers(0, 23),
    started_min=st.one_of(st.none(), st.integers(0, 600)),
    shift_min=st.integers(0, 300),
    today_min=st.integers(0, 700),
    legs=st.integers(0, 35),
    rest_min=st.one_of(st.none(), st.integers(-60, 60)),
    located_min=st.integers(0, 20),
    insured_days=st.one_of(st.none(), st.integers(-1, 2)),
    later=st.floats(0.0, 1.0),
)
def test_the_volunteer_only_rules_hold_until_the_time_available_until_gives(
    hour: int,
    started_min: int | None,
    shift_min: int,
    today_min: int,
    legs: int,
    rest_min: int | None,
    located_min: int,
    insured_days: int | None,
    later: float,
) -> None:
    now = NOW.replace(hour=hour, minute=37)
    day = e.local_day(now, POLICY.local_time_zone)
    record = w.DutyRecord(
        duty_started_at=None if started_min is None else now - timedelta(minutes=started_min),
        shift_duty=timedelta(minutes=shift_min),
        rest_until=None if rest_min is None else now + timedelta(minutes=rest_min),
        duty_day=day,
        duty_today=timedelta(minutes=today_min),
        legs_day=day,
        legs_done=legs,
    )
    v = volunteer(
        on_duty=started_min is not None,
        duty=record,
        duty_started_at=record.duty_started_at,
        rest_until=record.rest_until,
        location_at=now - timedelta(minutes=located_min),
        insured_until=None if insured_days is None else day + timedelta(days=insured_days),
    )
    until = e.available_until(v, now, POLICY)
    assert (until is None) is not e.is_available(v, now, POLICY)
    if until is not None:
        assert until >= now
        for t in (now + (until - now) * later, until - timedelta(microseconds=1)):
            if now <= t < until:
                assert e.is_available(v, t, POLICY), t


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({"vehicle": "foot"}, False),  # a bicycle leg needs at least a bicycle
        ({"vehicle": "van"}, True),  # a van does what a bicycle does
        ({"capacity_kg": 4.9}, False),
        ({"skills": frozenset()}, False),
    ],
)
def test_vehicle_capacity_and_skills_must_cover_the_leg(changes: dict[str, object], ok: bool) -> None:
    assert e.equipped(volunteer(**changes), leg(), NOW, POLICY) is ok


def test_the_dropoff_language_must_be_spoken() -> None:
    assert e.broken_rules(volunteer(languages=frozenset({"zh"})), leg(), NOW, POLICY) == [
        "speaks_the_language"
    ]


def test_a_volunteer_who_declined_or_let_the_offer_expire_is_not_asked_again() -> None:
    v = volunteer()
    assert e.broken_rules(v, leg(rejected_by=frozenset({v.id})), NOW, POLICY) == ["not_rejected"]


def test_a_volunteer_of_another_organisation_is_never_eligible() -> None:
    assert e.broken_rules(volunteer(organisation_id=uuid.UUID(int=2)), leg(), NOW, POLICY) == [
        "same_organisation"
    ]


def test_radius_depends_on_the_vehicle() -> None:
    # About 3.3 km north of the pickup: too far on foot (2 km), fine by bicycle (5 km).
    far = {"lat": 29.905, "lon": 121.555}
    assert e.within_radius(volunteer(vehicle="bicycle", **far), leg(vehicle=None), NOW, POLICY)
    assert not e.within_radius(volunteer(vehicle="foot", **far), leg(vehicle=None), NOW, POLICY)


def test_radius_widens_in_steps_while_a_leg_waits_up_to_a_cap() -> None:
    assert e.widen_search_radius(59, POLICY) == 1.0
    assert e.widen_search_radius(60, POLICY) == 1.5
    assert e.widen_search_radius(150, POLICY) == 2.0
    assert e.widen_search_radius(10_000, POLICY) == 3.0
    # About 3.3 km away on foot: out of reach at first, in reach after two steps of waiting.
    v = volunteer(vehicle="foot", lat=29.905, lon=121.555)
    assert not e.within_radius(v, leg(vehicle=None), NOW, POLICY)
    assert e.within_radius(v, leg(vehicle=None, waiting_s=120), NOW, POLICY)
    assert e.search_radius_m("foot", leg(waiting_s=120), POLICY) == SEARCH_RADIUS_M["foot"] * 2


def test_escalation_after_the_configured_wait_or_near_the_deadline() -> None:
    kwargs = {"now": NOW, "wait_limit_s": 600.0, "deadline_margin_s": 900.0}
    assert e.escalation_reason(waiting_s=599, deliver_by=None, **kwargs) is None  # type: ignore[arg-type]
    assert e.escalation_reason(waiting_s=600, deliver_by=None, **kwargs) == "waited_too_long"  # type: ignore[arg-type]
    near = NOW + timedelta(minutes=10)
    assert e.escalation_reason(waiting_s=5, deliver_by=near, **kwargs) == "deadline_near"  # type: ignore[arg-type]
    later = NOW + timedelta(hours=2)
    assert e.escalation_reason(waiting_s=5, deliver_by=later, **kwargs) is None  # type: ignore[arg-type]
