"""An operator's hand assignment and moves: the matcher's own rules refuse, unless overridden."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain import welfare as w
from services.dispatcher.domain.errors import (
    DailyCapReached,
    InsuranceLapsed,
    RestOwed,
    TransitionRefused,
    VolunteerAtLimit,
    VolunteerDeactivated,
    VolunteerOffDuty,
)
from services.dispatcher.domain.leg import LegStatus
from tests.unit.dispatcher.test_eligibility import NOW, POLICY, leg, volunteer
from tests.unit.dispatcher.test_leg_lifecycle import Carrier

TODAY = e.local_day(NOW, POLICY.welfare_limits.time_zone)


def test_hand_assignment_rules_are_the_matchers_own() -> None:
    assert set(e.HAND_ASSIGNMENT_RULES) <= set(e.VOLUNTEER_RULES)
    assert [r.__name__ for r in e.HAND_ASSIGNMENT_RULES] == [
        "vetted",
        "on_duty",
        "insured",
        "rested",
        "within_daily_caps",
    ]


def test_a_volunteer_fit_for_offers_is_not_refused_wherever_they_are() -> None:
    far_and_stale = volunteer(lat=None, lon=None, location_at=None, active_legs=2)
    assert e.hand_assignment_refusals(far_and_stale, NOW, POLICY) == []
    e.ensure_may_assign_by_hand(far_and_stale, NOW, POLICY, overridden=False)


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"on_duty": False, "duty_started_at": None}, VolunteerOffDuty, "off duty"),
        ({"insured": False}, InsuranceLapsed, "not insured"),
        ({"insured_until": date(2026, 11, 30)}, InsuranceLapsed, "insurance ended on 2026-11-30"),
        ({"rest_until": NOW + timedelta(minutes=20)}, RestOwed, "owed rest until"),
        ({"duty_started_at": NOW - timedelta(hours=4, minutes=5)}, RestOwed, "owed rest"),
        (
            {"duty": w.DutyRecord(duty_started_at=NOW, legs_day=TODAY, legs_done=30)},
            DailyCapReached,
            "cap of 30 legs",
        ),
        (
            {
                "duty": w.DutyRecord(
                    duty_started_at=NOW - timedelta(minutes=1),
                    duty_day=TODAY,
                    duty_today=timedelta(hours=10),
                )
            },
            DailyCapReached,
            "cap of 10 h on duty",
        ),
    ],
)
def test_each_refusal_names_what_is_wrong_and_an_override_lifts_it(
    changes: dict[str, object], error: type[Exception], words: str
) -> None:
    v = replace(volunteer(), **changes)  # type: ignore[arg-type]
    assert not e.is_available(v, NOW, POLICY), "the matcher would not offer them anything either"
    with pytest.raises(error, match=words) as raised:
        e.ensure_may_assign_by_hand(v, NOW, POLICY, overridden=False)
    assert "override" in str(raised.value)
    e.ensure_may_assign_by_hand(v, NOW, POLICY, overridden=True)


def test_yesterdays_legs_do_not_count_towards_todays_cap() -> None:
    v = volunteer(duty=w.DutyRecord(duty_started_at=NOW, legs_day=TODAY - timedelta(days=1), legs_done=30))
    assert e.hand_assignment_refusals(v, NOW, POLICY) == []


def test_every_refusal_is_named_and_the_first_decides_the_kind() -> None:
    v = volunteer(on_duty=False, insured=False, rest_until=NOW + timedelta(minutes=5))
    assert [type(r) for r in e.hand_assignment_refusals(v, NOW, POLICY)] == [
        VolunteerOffDuty,
        InsuranceLapsed,
        RestOwed,
    ]
    with pytest.raises(VolunteerOffDuty, match=r"off duty.*not insured.*owed rest"):
        e.ensure_may_assign_by_hand(v, NOW, POLICY, overridden=False)


def test_the_rule_does_not_look_at_the_leg() -> None:
    v = volunteer(on_duty=False)
    assert "on_duty" in e.broken_rules(v, leg(), NOW, POLICY)
    assert [type(r) for r in e.hand_assignment_refusals(v, NOW, POLICY)] == [VolunteerOffDuty]


def test_only_an_assigned_leg_not_yet_picked_up_can_be_moved_or_released() -> None:
    assert LegStatus.ASSIGNED in lifecycle.TRANSITIONS[LegStatus.ASSIGNED]
    assert lifecycle.move(LegStatus.ASSIGNED, Carrier()) is LegStatus.ASSIGNED
    assert lifecycle.release(LegStatus.ASSIGNED) is LegStatus.PENDING
    for status in set(LegStatus) - {LegStatus.ASSIGNED}:
        with pytest.raises(TransitionRefused, match="only a leg assigned and not yet picked up"):
            lifecycle.move(status, Carrier())
        with pytest.raises(TransitionRefused):
            lifecycle.release(status)


def test_a_leg_moves_only_to_an_active_volunteer_below_their_limit() -> None:
    with pytest.raises(VolunteerAtLimit):
        lifecycle.move(LegStatus.ASSIGNED, Carrier(active_legs=2, max_active_legs=2))
    with pytest.raises(VolunteerDeactivated):
        lifecycle.move(LegStatus.ASSIGNED, Carrier(deactivated_at=NOW))


def test_an_assigned_leg_is_moved_not_assigned_again() -> None:
    with pytest.raises(TransitionRefused, match="an operator may move it"):
        lifecycle.assign(LegStatus.ASSIGNED, Carrier(), by_hand=True)
