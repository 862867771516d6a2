"""Route rules (pickup before drop-off, capacity, count, windows, shift end): the planner keeps them."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Hashable, Sequence
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import routing
from services.dispatcher.domain.geo import haversine_m, travel_time_s
from services.dispatcher.domain.routing import (
    Courier,
    Route,
    RouteLeg,
    Stop,
    broken_rule,
    insert_leg,
    route_leg,
    timeline,
)

KITCHEN = (29.8683, 121.5440)
# The planner's wall-clock budget leaves legs out on a busy machine; these tests check what it plans,
# so they give it time enough. The property tests below keep the round's budget: every rule holds
# whatever the time box cuts.
ENOUGH_S = 5.0


def plan_route(c: Courier, legs: Sequence[RouteLeg]) -> Route | None:
    return routing.plan_route(c, legs, budget_s=ENOUGH_S)


def remove_leg(c: Courier, route: Route, leg_id: Hashable) -> Route:
    return routing.remove_leg(c, route, leg_id, budget_s=ENOUGH_S)


def near(d_lat: float, d_lon: float, origin: tuple[float, float] = KITCHEN) -> tuple[float, float]:
    return origin[0] + d_lat, origin[1] + d_lon


def courier(**kw: object) -> Courier:
    values: dict[str, object] = {
        "lat": KITCHEN[0],
        "lon": KITCHEN[1],
        "vehicle": "ebike",
        "start_s": 0.0,
        "capacity_kg": 30.0,
        "max_legs": 10,
    }
    values.update(kw)
    return Courier(**values)  # type: ignore[arg-type]


def violations(c: Courier, stops: Sequence[Stop]) -> list[str]:
    """Every rule a stop order breaks, worked out here on its own (not with the module's checker)."""
    broken: list[str] = []
    seen_pickup: set[Hashable] = set()
    pickups = {s.leg_id for s in stops if s.kind == "pickup"}
    dropoffs = {s.leg_id for s in stops if s.kind == "dropoff"}
    if pickups - dropoffs:
        broken.append("precedence")
    load = sum(s.weight_kg for s in stops if s.kind == "dropoff" and s.leg_id not in pickups)
    clock, lat, lon = c.start_s, c.lat, c.lon
    for s in stops:
        if s.kind == "pickup":
            seen_pickup.add(s.leg_id)
            load += s.weight_kg
        else:
            if s.leg_id in pickups and s.leg_id not in seen_pickup:
                broken.append("precedence")
            load -= s.weight_kg
        if load > c.capacity_kg + 1e-6:
            broken.append("capacity")
        arrive = clock + travel_time_s(haversine_m(lat, lon, s.lat, s.lon), c.vehicle)
        start = max(arrive, s.earliest_s)
        if start > s.latest_s + 1e-3:
            broken.append("window")
        clock, lat, lon = start + s.service_s, s.lat, s.lon
    if clock > c.shift_end_s + 1e-3:
        broken.append("shift")
    if len({s.leg_id for s in stops}) > c.max_legs:
        broken.append("count")
    return broken


def test_every_pickup_comes_before_its_dropoff() -> None:
    legs = [route_leg(i, pickup=near(0.001 * i, 0), dropoff=near(0.01, 0.01 * i)) for i in range(5)]
    route = plan_route(courier(), legs)
    assert route is not None and set(route.leg_ids) == set(range(5))
    order = [(s.leg_id, s.kind) for s in route.stops]
    for i in range(5):
        assert order.index((i, "pickup")) < order.index((i, "dropoff"))
    assert broken_rule(courier(), route.stops) is None
    assert broken_rule(courier(), tuple(reversed(route.stops))) == "precedence"


def test_ten_lunches_from_one_kitchen_go_in_one_route_when_they_fit() -> None:
    legs = [
        route_leg(i, pickup=KITCHEN, dropoff=near(0.004 * math.cos(i), 0.004 * math.sin(i)), weight_kg=0.5)
        for i in range(10)
    ]
    route = plan_route(courier(max_legs=10), legs)
    assert route is not None and len(route.leg_ids) == 10
    # All pickups first here: everything is at the kitchen, so one visit serves them all.
    assert {s.kind for s in route.stops[:10]} == {"pickup"}
    assert route.length_m < sum(2 * haversine_m(*KITCHEN, leg.dropoff.lat, leg.dropoff.lon) for leg in legs)


def test_capacity_and_count_leave_legs_out() -> None:
    legs = [route_leg(i, pickup=KITCHEN, dropoff=near(0.002, 0.001 * i), weight_kg=8.0) for i in range(5)]
    by_weight = plan_route(courier(capacity_kg=20.0), legs)
    assert by_weight is not None
    # Three fit by weight when each is dropped before the next is taken; the load never passes 20 kg.
    assert broken_rule(courier(capacity_kg=20.0), by_weight.stops) is None
    by_count = plan_route(courier(max_legs=2), legs)
    assert by_count is not None and len(by_count.leg_ids) == 2
    assert plan_route(courier(capacity_kg=5.0), legs) is None


def test_a_deadline_that_cannot_be_met_is_not_routed() -> None:
    far = near(0.05, 0.05)  # about 7 km: over 20 min by ebike
    legs = [route_leg("late", pickup=KITCHEN, dropoff=far, due_s=600.0)]
    assert plan_route(courier(), legs) is None
    ok = [route_leg("ok", pickup=KITCHEN, dropoff=far, due_s=3600.0)]
    route = plan_route(courier(), ok)
    assert route is not None and route.etas[-1] <= 3600.0


def test_a_pickup_not_ready_is_waited_for() -> None:
    legs = [route_leg("later", pickup=KITCHEN, dropoff=near(0.001, 0), ready_s=900.0)]
    route = plan_route(courier(), legs)
    assert route is not None and route.etas[0] == 900.0


def test_a_route_past_the_end_of_shift_is_not_offered() -> None:
    legs = [route_leg("x", pickup=KITCHEN, dropoff=near(0.03, 0.0))]
    assert plan_route(courier(shift_end_s=300.0), legs) is None
    assert plan_route(courier(shift_end_s=7200.0), legs) is not None


def test_insertion_keeps_the_accepted_stops_in_their_windows() -> None:
    c = courier()
    accepted = plan_route(c, [route_leg("a", pickup=KITCHEN, dropoff=near(0.01, 0.0), due_s=900.0)])
    assert accepted is not None
    # On the way: it goes in, and "a" still arrives in time.
    on_the_way = route_leg("b", pickup=near(0.002, 0.0), dropoff=near(0.008, 0.0))
    grown = insert_leg(c, accepted, on_the_way)
    assert grown is not None and set(grown.leg_ids) == {"a", "b"}
    assert broken_rule(c, grown.stops) is None
    # The accepted stops keep their order.
    assert [s for s in grown.stops if s.leg_id == "a"] == list(accepted.stops)
    # A leg due soon the other way: before "a" makes "a" late, after "a" is late itself.
    detour = route_leg("c", pickup=near(-0.03, 0.0), dropoff=near(-0.04, 0.0), due_s=1000.0)
    assert insert_leg(c, accepted, detour) is None


def test_insertion_refuses_a_leg_over_capacity_or_count() -> None:
    c = courier(capacity_kg=10.0, max_legs=2)
    accepted = plan_route(c, [route_leg("a", pickup=KITCHEN, dropoff=near(0.01, 0.0), weight_kg=8.0)])
    assert accepted is not None
    heavy = route_leg("b", pickup=KITCHEN, dropoff=near(0.01, 0.001), weight_kg=5.0)
    grown = insert_leg(c, accepted, heavy)
    # Only after "a" is set down does "b" fit.
    assert grown is not None and broken_rule(c, grown.stops) is None
    assert [s.kind for s in grown.stops if s.leg_id == "a"] == ["pickup", "dropoff"]
    third = route_leg("c", pickup=KITCHEN, dropoff=near(0.0, 0.001))
    assert insert_leg(c, grown, third) is None


def test_several_legs_go_into_an_accepted_route_in_its_order_as_far_as_the_rules_allow() -> None:
    c = courier(capacity_kg=10.0, max_legs=3)
    accepted = plan_route(c, [route_leg("a", pickup=KITCHEN, dropoff=near(0.01, 0.0), due_s=1200.0)])
    assert accepted is not None
    new = [
        route_leg("b", pickup=KITCHEN, dropoff=near(0.008, 0.0), weight_kg=2.0),
        route_leg("c", pickup=KITCHEN, dropoff=near(0.012, 0.0), weight_kg=2.0),
        route_leg("d", pickup=KITCHEN, dropoff=near(0.011, 0.0), weight_kg=2.0),  # one too many
    ]
    grown = routing.insert_legs(c, accepted, new)
    assert grown is not None and len(grown.leg_ids) == 3 and "a" in grown.leg_ids
    assert broken_rule(c, grown.stops) is None
    assert [s for s in grown.stops if s.leg_id == "a"] == list(accepted.stops)
    # Nothing fits: over capacity, or a deadline that cannot be met.
    heavy = route_leg("e", pickup=KITCHEN, dropoff=near(0.01, 0.0), weight_kg=11.0)
    late = route_leg("f", pickup=near(-0.05, 0.0), dropoff=near(-0.06, 0.0), due_s=600.0)
    assert routing.insert_legs(c, accepted, [heavy, late]) is None


def test_a_leg_in_hand_is_a_lone_dropoff_with_its_load_on_board() -> None:
    c = courier(capacity_kg=10.0)
    in_hand = Stop("held", "dropoff", *near(0.01, 0.0), weight_kg=8.0)
    assert broken_rule(c, [in_hand]) is None
    heavy = route_leg("b", pickup=KITCHEN, dropoff=near(0.0, 0.01), weight_kg=5.0)
    grown = insert_leg(c, [in_hand], heavy)
    assert grown is not None
    assert [(s.leg_id, s.kind) for s in grown.stops].index(("held", "dropoff")) < [
        (s.leg_id, s.kind) for s in grown.stops
    ].index(("b", "pickup"))


def test_removal_takes_the_legs_stops_out_and_reorders() -> None:
    c = courier()
    legs = [route_leg(i, pickup=near(0.002 * i, 0.0), dropoff=near(0.01, 0.002 * i)) for i in range(4)]
    route = plan_route(c, legs)
    assert route is not None
    smaller = remove_leg(c, route, 2)
    assert 2 not in smaller.leg_ids and len(smaller.stops) == len(route.stops) - 2
    assert broken_rule(c, smaller.stops) is None
    assert smaller.travel_s <= timeline(c, [s for s in route.stops if s.leg_id != 2]).travel_s + 1e-9


# --- property tests: nothing the planner returns breaks a rule

coords = st.tuples(st.floats(-0.03, 0.03), st.floats(-0.03, 0.03))


@st.composite
def legs_and_courier(draw: st.DrawFn) -> tuple[Courier, list[RouteLeg]]:
    n = draw(st.integers(1, 8))
    legs = []
    for i in range(n):
        ready = draw(st.one_of(st.just(-math.inf), st.floats(0, 3600)))
        due = draw(st.one_of(st.just(math.inf), st.floats(300, 7200)))
        legs.append(
            route_leg(
                i,
                pickup=near(*draw(coords)),
                dropoff=near(*draw(coords)),
                ready_s=ready,
                due_s=due,
                weight_kg=draw(st.floats(0, 15)),
                service_s=draw(st.sampled_from([0.0, 60.0, 120.0])),
            )
        )
    c = Courier(
        *near(*draw(coords)),
        vehicle=draw(st.sampled_from(["foot", "bicycle", "ebike", "car", "van"])),
        start_s=0.0,
        capacity_kg=draw(st.floats(1, 40)),
        max_legs=draw(st.integers(1, 6)),
        shift_end_s=draw(st.one_of(st.just(math.inf), st.floats(600, 14_400))),
    )
    return c, legs


@settings(max_examples=200, deadline=None)
@given(legs_and_courier())
def test_no_planned_route_breaks_a_rule(case: tuple[Courier, list[RouteLeg]]) -> None:
    c, legs = case
    route = routing.plan_route(c, legs)
    if route is None:
        # Nothing fits alone either.
        assert all(broken_rule(c, (leg.pickup, leg.dropoff)) is not None for leg in legs)
        return
    assert violations(c, route.stops) == []
    assert set(route.leg_ids) <= {leg.id for leg in legs}
    assert all(sum(1 for s in route.stops if s.leg_id == i) == 2 for i in route.leg_ids)
    again = timeline(c, route.stops)
    assert again.etas == route.etas and math.isclose(again.length_m, route.length_m)


@settings(max_examples=200, deadline=None)
@given(legs_and_courier(), legs_and_courier())
def test_no_insertion_or_removal_breaks_a_rule(
    case: tuple[Courier, list[RouteLeg]], other: tuple[Courier, list[RouteLeg]]
) -> None:
    c, legs = case
    route = routing.plan_route(c, legs)
    if route is None:
        return
    new = other[1][0]
    new = RouteLeg(
        Stop(
            "new",
            "pickup",
            new.pickup.lat,
            new.pickup.lon,
            new.pickup.earliest_s,
            weight_kg=new.pickup.weight_kg,
        ),
        Stop(
            "new",
            "dropoff",
            new.dropoff.lat,
            new.dropoff.lon,
            latest_s=new.dropoff.latest_s,
            weight_kg=new.dropoff.weight_kg,
        ),
    )
    grown = insert_leg(c, route, new)
    if grown is not None:
        assert violations(c, grown.stops) == []
        assert [s for s in grown.stops if s.leg_id != "new"] == list(route.stops)
    several = routing.insert_legs(
        c, route, [new, *(replace_id(leg, f"new{i}") for i, leg in enumerate(other[1][1:]))]
    )
    if several is not None:
        assert violations(c, several.stops) == []
        assert [s for s in several.stops if s.leg_id in route.leg_ids] == list(route.stops)
    for leg_id in route.leg_ids:
        smaller = routing.remove_leg(c, route, leg_id)
        assert violations(c, smaller.stops) == []
        assert leg_id not in smaller.leg_ids


def replace_id(leg: RouteLeg, leg_id: Hashable) -> RouteLeg:
    return RouteLeg(
        dataclasses.replace(leg.pickup, leg_id=leg_id), dataclasses.replace(leg.dropoff, leg_id=leg_id)
    )


def test_route_is_the_public_type() -> None:
    route = plan_route(courier(), [route_leg("a", pickup=KITCHEN, dropoff=near(0.001, 0.001))])
    assert isinstance(route, Route) and route.leg_ids == ("a",)


def test_a_spent_budget_still_routes_every_checkpoint_of_a_supply_run() -> None:
    # A busy machine may spend the budget before the first insertion: the run still goes whole to
    # one van instead of its later checkpoints going to other cars, each driving out to the depot.
    van = courier(vehicle="van", capacity_kg=800.0)
    checkpoints = [
        route_leg(i, pickup=KITCHEN, dropoff=near(0.02 * math.cos(i), 0.02 * math.sin(i)), weight_kg=20.0)
        for i in range(9)
    ]
    route = routing.plan_route(van, checkpoints, budget_s=0.0)
    assert route is not None
    assert sorted(route.leg_ids) == list(range(9))  # type: ignore[type-var]
    assert violations(van, route.stops) == []


def test_a_slow_clock_still_puts_every_leg_of_a_batch_into_the_route_under_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a busy machine each insertion step may take longer than a round's whole budget: the batch
    # still goes into the route under way together, not one leg per round.
    c = courier(capacity_kg=50.0, max_legs=6)
    accepted = plan_route(c, [route_leg("a", pickup=KITCHEN, dropoff=near(0.01, 0.0))])
    assert accepted is not None
    clock = itertools.count(0.0, 5.0)  # five seconds a reading
    monkeypatch.setattr(routing, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    batch = [
        route_leg(f"b{i}", pickup=KITCHEN, dropoff=near(0.01, 0.002 * i), weight_kg=1.0) for i in range(4)
    ]
    grown = routing.insert_legs(c, accepted, batch)
    assert grown is not None and sorted(map(str, grown.leg_ids)) == ["a", "b0", "b1", "b2", "b3"]
    assert violations(c, grown.stops) == []
