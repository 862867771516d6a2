"""The reserve: routine legs leave a share of the cars and vans idle for urgent and critical legs to come."""

from __future__ import annotations

import uuid
from dataclasses import replace

from services.dispatcher.domain.matching import match_batch
from tests.unit.dispatcher.test_matching import NOW, POLICY, leg, volunteer

HERE = (29.870, 121.545)


def _fleet(vehicle: str, count: int, **changes: object) -> list:  # type: ignore[type-arg]
    return [
        volunteer(HERE[0] + 0.001 * i, HERE[1], vehicle=vehicle, capacity_kg=300.0, **changes)
        for i in range(count)
    ]


def _car_legs(count: int, **changes: object) -> list:  # type: ignore[type-arg]
    return [leg(HERE[0] + 0.0005 * i, HERE[1], vehicle="car", **changes) for i in range(count)]


def test_routine_legs_leave_a_tenth_of_the_cars_idle() -> None:
    cars = _fleet("car", 10)
    matches = match_batch(_car_legs(10), cars, NOW, POLICY)
    assert len(matches) == 9
    assert len({m.volunteer_id for m in matches}) == 9


def test_an_urgent_leg_takes_the_reserve_and_routine_legs_still_leave_it() -> None:
    cars = _fleet("car", 10)
    urgent = leg(*HERE, vehicle="car", priority="urgent")
    routine = _car_legs(10)
    matches = match_batch([*routine, urgent], cars, NOW, POLICY)
    placed = {m.leg_id for m in matches}
    assert urgent.id in placed
    assert len(placed) == 9  # the urgent leg and eight routine ones: one car stays idle


def test_the_reserve_holds_across_rounds_for_a_pressing_leg_that_comes_later() -> None:
    cars = _fleet("car", 10)
    first = match_batch(_car_legs(10), cars, NOW, POLICY)
    taken = {m.volunteer_id for m in first}
    left = [v for v in cars if v.id not in taken]
    assert len(left) == 1
    urgent = leg(*HERE, vehicle="car", priority="urgent")
    assert [m.leg_id for m in match_batch([urgent], left, NOW, POLICY)] == [urgent.id]


def test_a_routine_leg_that_waited_long_enough_takes_the_last_car() -> None:
    cars = _fleet("car", 10)
    waited = _car_legs(10, waiting_s=POLICY.reserve_wait_s)
    assert len(match_batch(waited, cars, NOW, POLICY)) == 10


def test_the_least_waiting_routine_leg_is_the_one_held_back() -> None:
    cars = _fleet("car", 10)
    legs = [replace(x, waiting_s=100.0 + i) for i, x in enumerate(_car_legs(10))]
    placed = {m.leg_id for m in match_batch(legs, cars, NOW, POLICY)}
    assert [x.id for x in legs if x.id not in placed] == [legs[0].id]


def test_a_routine_leg_needing_no_vehicle_does_not_take_the_last_car_either() -> None:
    cars = _fleet("car", 10)
    errands = [leg(HERE[0] + 0.0005 * i, HERE[1]) for i in range(10)]
    assert len(match_batch(errands, cars, NOW, POLICY)) == 9


def test_vans_keep_their_own_reserve_from_routine_car_legs() -> None:
    # Twenty cars and ten vans: a tenth of the thirty for car legs, a tenth of the ten vans for van legs.
    fleet = _fleet("car", 20) + _fleet("van", 10)
    matches = match_batch(_car_legs(30), fleet, NOW, POLICY)
    vans = {v.id for v in fleet if v.vehicle == "van"}
    idle = {v.id for v in fleet} - {m.volunteer_id for m in matches}
    assert len(idle) == 3
    assert idle & vans, "at least one van stays idle for a pressing van leg"


def test_a_small_fleet_keeps_no_reserve() -> None:
    cars = _fleet("car", 4)
    assert len(match_batch(_car_legs(4), cars, NOW, POLICY)) == 4


def test_no_reserve_when_the_share_is_zero() -> None:
    cars = _fleet("car", 10)
    assert len(match_batch(_car_legs(10), cars, NOW, replace(POLICY, reserve_share=0.0))) == 10


def test_cars_already_carrying_legs_are_not_the_reserve() -> None:
    busy = _fleet("car", 9, active_legs=1)
    idle = _fleet("car", 1)
    legs = _car_legs(1)
    # Ten cars on duty: one must stay idle, and the idle one is the only one that counts.
    matches = match_batch(legs, [*busy, *idle], NOW, POLICY)
    assert {m.volunteer_id for m in matches} <= {v.id for v in busy}


def test_another_organisations_idle_cars_are_not_this_ones_reserve() -> None:
    other = uuid.uuid4()
    ours = _fleet("car", 10)
    theirs = _fleet("car", 10, organisation_id=other)
    matches = match_batch(_car_legs(10), [*ours, *theirs], NOW, POLICY)
    assert len(matches) == 9
    assert {m.volunteer_id for m in matches} <= {v.id for v in ours}
