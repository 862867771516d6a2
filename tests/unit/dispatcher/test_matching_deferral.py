"""Deferral under load and fairness: far pickups wait while volunteers are scarce, never forever."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain import matching as m
from services.dispatcher.domain import welfare as w
from services.dispatcher.domain.matching import acceptable_pickup_m, match_batch
from tests.unit.dispatcher.test_matching import NOW, POLICY, leg, volunteer

# About 5.5 km apart: inside an ebike's search radius, beyond the distance always acceptable under load.
FAR = (29.870, 121.600)
PICKUP = (29.870, 121.545)


def _crowded(**changes: object) -> tuple[list[e.Leg], list[e.Volunteer]]:
    """Two legs waiting, one ebike volunteer free and far from the first: volunteers are scarce."""
    first = leg(PICKUP[0], PICKUP[1], **changes)
    second = leg(29.300, 121.400)  # far from everyone: only there to make the window crowded
    return [first, second], [volunteer(*FAR)]


def test_a_far_volunteer_is_not_sent_to_a_fresh_routine_leg_when_volunteers_are_scarce() -> None:
    legs, vols = _crowded()
    assert match_batch(legs, vols, NOW, POLICY) == []


def test_a_leg_that_waited_long_enough_takes_any_eligible_free_volunteer() -> None:
    waited = (5_600.0 - m.DEFER_BASE_M) / m.DEFER_PER_WAIT_S_M
    legs, vols = _crowded(waiting_s=waited)
    assert [x.leg_id for x in match_batch(legs, vols, NOW, POLICY)] == [legs[0].id]


def test_the_acceptable_pickup_grows_without_bound_while_a_leg_waits() -> None:
    fresh = leg(*PICKUP)
    assert acceptable_pickup_m(fresh) == m.DEFER_BASE_M
    assert acceptable_pickup_m(replace(fresh, waiting_s=3_600.0)) > acceptable_pickup_m(
        replace(fresh, waiting_s=600.0)
    )
    assert acceptable_pickup_m(replace(fresh, waiting_s=1e6)) > 1e6


def test_a_critical_leg_is_never_deferred() -> None:
    legs, vols = _crowded(priority="critical")
    assert acceptable_pickup_m(legs[0]) == float("inf")
    assert [x.leg_id for x in match_batch(legs, vols, NOW, POLICY)] == [legs[0].id]


def test_no_deferral_when_volunteers_are_not_scarce() -> None:
    only = leg(*PICKUP)
    far = volunteer(*FAR)
    assert [x.volunteer_id for x in match_batch([only], [far], NOW, POLICY)] == [far.id]


def test_a_near_volunteer_is_sent_even_when_volunteers_are_scarce() -> None:
    legs, _ = _crowded()
    near = volunteer(29.871, 121.546)
    assert [(x.leg_id, x.volunteer_id) for x in match_batch(legs, [near], NOW, POLICY)] == [
        (legs[0].id, near.id)
    ]


def test_with_routes_a_far_volunteer_with_a_free_slot_is_not_sent_while_few_have_nothing_to_do() -> None:
    # Two legs waiting; ten volunteers far away, each already carrying a leg with two slots free:
    # none of them is scarce as the one-leg rule counts, but nobody has nothing to do.
    legs = [leg(*PICKUP), leg(29.871, 121.546)]
    riders = [volunteer(FAR[0], FAR[1] + 0.001 * i, max_active_legs=3, active_legs=1) for i in range(10)]
    assert match_batch(legs, riders, NOW, POLICY) != []  # one leg at a time: not crowded
    assert match_batch(legs, riders, NOW, POLICY, plan=True) == []
    # A leg that waited long enough goes.
    waited = [replace(lg, waiting_s=(5_600.0 - m.DEFER_BASE_M) / m.DEFER_PER_WAIT_S_M) for lg in legs]
    assert len(match_batch(waited, riders, NOW, POLICY, plan=True)) == 2
    # Idle volunteers enough: not held back.
    idle = [replace(v, active_legs=0) for v in riders]
    assert len(match_batch(legs, idle, NOW, POLICY, plan=True)) == 2
    # A leg with a deadline is not held back: its window is what waiting would spend.
    due = [replace(lg, due_s=NOW.timestamp() + 3_600.0) for lg in legs]
    assert len(match_batch(due, riders, NOW, POLICY, plan=True)) == 2
    # Nor a critical one.
    critical = [replace(lg, priority="critical") for lg in legs]
    assert len(match_batch(critical, riders, NOW, POLICY, plan=True)) == 2


def test_with_routes_a_leg_is_not_held_back_when_everyone_free_is_idle() -> None:
    # One leg, one volunteer with nothing to do a little beyond 2 km, nobody carrying legs who might
    # pass nearer: waiting would gain nothing.
    only = leg(*PICKUP)
    alone = volunteer(PICKUP[0] - 0.02, PICKUP[1])
    assert [x.volunteer_id for x in match_batch([only], [alone], NOW, POLICY, plan=True)] == [alone.id]


def test_work_goes_to_the_volunteer_who_has_done_less_today_among_equals() -> None:
    only = leg(*PICKUP)
    busy = volunteer(29.875, 121.545, legs_done_today=6)
    rested = volunteer(29.865, 121.545, legs_done_today=0)
    assert [x.volunteer_id for x in match_batch([only], [busy, rested], NOW, POLICY)] == [rested.id]


def test_fairness_does_not_send_someone_much_further() -> None:
    # Twice as far is not worth it to spare a volunteer a few legs: fairness only breaks near-ties.
    only = leg(*PICKUP)
    busy = volunteer(29.875, 121.545, legs_done_today=5)
    twice_as_far = volunteer(29.860, 121.545, legs_done_today=0)
    assert [x.volunteer_id for x in match_batch([only], [busy, twice_as_far], NOW, POLICY)] == [busy.id]


def test_legs_done_before_local_midnight_no_longer_weigh_on_fairness() -> None:
    only = leg(*PICKUP)
    yesterday = w.local_day(NOW, POLICY.welfare_limits) - timedelta(days=1)
    busy_yesterday = volunteer(
        29.875,
        121.545,
        legs_done_today=6,
        duty=w.DutyRecord(duty_started_at=NOW - timedelta(hours=1), legs_day=yesterday, legs_done=6),
    )
    rested = volunteer(29.865, 121.545, legs_done_today=0)
    assert [x.volunteer_id for x in match_batch([only], [busy_yesterday, rested], NOW, POLICY)] == [
        busy_yesterday.id
    ], "nearer, and nothing done today"


def test_an_urgent_leg_needing_a_car_is_never_deferred() -> None:
    legs, _ = _crowded(priority="urgent", vehicle="car")
    car = volunteer(*FAR, vehicle="car", capacity_kg=300.0)
    assert acceptable_pickup_m(legs[0]) == float("inf")
    assert [x.leg_id for x in match_batch(legs, [car], NOW, POLICY)] == [legs[0].id]


def test_an_urgent_leg_any_volunteer_can_carry_waits_for_a_nearer_one() -> None:
    legs, vols = _crowded(priority="urgent")
    assert acceptable_pickup_m(legs[0]) == m.DEFER_BASE_M
    assert match_batch(legs, vols, NOW, POLICY) == []
