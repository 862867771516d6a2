"""The route benchmarks' scenarios, simulation and VROOM adapter (bench.routes, domain.planning.solve)."""

from __future__ import annotations

import itertools
import math

import pytest

from bench import dispatch_stream, route_round, routes
from bench.dispatch_quality import CAPACITY_KG
from services.dispatcher.domain.geo import haversine_m, travel_time_s
from services.dispatcher.domain.planning import Courier, Shipment, path_m, solve, street_m
from shared.ningbo import DISTRICTS

CENTRE = (29.87, 121.50)


def east(km: float) -> tuple[float, float]:
    """A point `km` east of the centre."""
    return CENTRE[0], CENTRE[1] + km / (111.0 * math.cos(math.radians(CENTRE[0])))


def test_vroom_serves_shipments_in_order_with_the_dispatchers_travel_times() -> None:
    courier = Courier(1, "bicycle", east(0), 0, 10_000, capacity_kg=15.0, max_legs=4)
    shipments = [
        Shipment(0, east(1), east(3), 1.0, ready_s=0, deliver_by_s=10_000, service_s=60),
        Shipment(1, east(2), east(4), 1.0, ready_s=0, deliver_by_s=10_000, service_s=60),
    ]
    plan = solve(shipments, [courier])
    assert plan.unassigned == []
    visits = plan.routes[1]
    # Along a line the shortest order picks both up on the way out, then drops both off.
    assert [(v.shipment_id, v.kind) for v in visits] == [
        (0, "pickup"),
        (1, "pickup"),
        (0, "dropoff"),
        (1, "dropoff"),
    ]
    assert plan.distance_m[1] == pytest.approx(street_m(east(0), east(4)), rel=1e-6)
    first_ride = travel_time_s(haversine_m(*east(0), *east(1)), "bicycle")
    assert visits[0].at_s == pytest.approx(first_ride, abs=1.0)
    assert visits[1].at_s == pytest.approx(2 * first_ride + 60, abs=2.0)


def test_vroom_keeps_capacity_legs_on_board_and_windows() -> None:
    courier = Courier(1, "bicycle", east(0), 0, 10_000, capacity_kg=15.0, max_legs=1)
    shipments = [
        Shipment(0, east(1), east(3), 1.0, ready_s=0, deliver_by_s=10_000),
        Shipment(1, east(2), east(4), 1.0, ready_s=0, deliver_by_s=10_000),
        # Too heavy for a bicycle, and one that cannot be reached in time: both left out.
        Shipment(2, east(1), east(2), 40.0, ready_s=0, deliver_by_s=10_000),
        Shipment(3, east(1), east(9), 1.0, ready_s=0, deliver_by_s=60),
    ]
    plan = solve(shipments, [courier])
    assert plan.unassigned == [2, 3]
    kinds = [v.kind for v in plan.routes[1]]
    assert kinds == ["pickup", "dropoff", "pickup", "dropoff"]  # one leg on board at a time
    for visit in plan.routes[1]:
        assert visit.at_s <= 10_000


def test_a_day_of_meals_has_a_lunch_peak_from_three_kitchens_in_three_districts() -> None:
    day = routes.make_meal_day(seed=3)
    assert 295 <= day.meals <= 305
    assert len(day.kitchens) == 3
    assert {leg.pickup for leg in day.legs} == set(day.kitchens)
    lunch = sum(leg.meals for leg in day.legs if 11 * 3600 <= leg.ready_s <= 12 * 3600 + 1800)
    assert 0.5 <= lunch / day.meals <= 0.7
    assert any(leg.meals > 1 for leg in day.legs) and any(leg.vulnerable for leg in day.legs)
    assert all(leg.due_s == leg.ready_s + routes.MEAL_WINDOW_S for leg in day.legs)
    centres = [(d.lat, d.lon) for d in DISTRICTS if d.name in routes.MEAL_DISTRICTS]
    for leg in day.legs:
        assert min(haversine_m(*leg.dropoff, *c) for c in centres) < 12_000
        assert leg.weight_kg <= CAPACITY_KG["bicycle"]
    assert {r.vehicle for r in day.riders} == {"bicycle", "ebike"}
    assert routes.make_meal_day(seed=3) == day  # seeded
    assert routes.make_meal_day(seed=4) != day


def test_one_leg_at_a_time_delivers_every_meal_riding_at_least_each_legs_own_distance() -> None:
    day = routes.make_meal_day(meals=60, riders=16, seed=5)
    outcome = routes.simulate_day(day, routes.one_leg_round)
    assert set(outcome.delivered_s) == {leg.id for leg in day.legs}
    assert outcome.trips == len(day.legs)  # one leg per trip
    for leg in day.legs:
        ride = travel_time_s(haversine_m(*leg.pickup, *leg.dropoff), "ebike")
        assert outcome.delivered_s[leg.id] >= leg.ready_s + routes.SERVICE_S + ride - 1e-6
    assert outcome.km * 1000 >= sum(street_m(leg.pickup, leg.dropoff) for leg in day.legs)
    summary = routes._day_summary(day, outcome)
    assert summary["meals_delivered"] == day.meals
    assert summary["km_per_meal"] == pytest.approx(outcome.km / day.meals, rel=1e-3)


def test_the_supply_runs_optimum_is_exact_and_both_planners_visit_every_checkpoint() -> None:
    depot, checkpoints = routes.make_supply_run(checkpoints=6, seed=1)
    brute = min(path_m([depot, *order]) for order in itertools.permutations(checkpoints))
    assert routes.optimum_open_path_m(depot, checkpoints) == pytest.approx(brute)
    ours = routes.planned_supply_run(depot, checkpoints, budget_s=1.0)
    assert sorted(ours) == sorted(checkpoints)
    assert path_m([depot, *ours]) >= brute - 1e-6
    assert routes.vroom_supply_run(depot, checkpoints) == pytest.approx(brute, rel=1e-3)


def test_the_route_matcher_carries_a_kitchens_batch_in_one_trip_where_one_leg_rides_back_each_time() -> None:
    kitchen = east(0)
    legs = [
        routes.Delivery(
            i, kitchen, east(1.0 + 0.3 * i), 11 * 3600.0, 11 * 3600.0 + routes.MEAL_WINDOW_S, 0.6, meals=1
        )
        for i in range(3)
    ]
    rider = routes.Rider(0, "bicycle", east(-0.2), 10.5 * 3600, 14.5 * 3600, 15.0)
    by_route = routes.simulate(legs, [rider], routes.route_round(3))
    one_leg = routes.simulate(legs, [rider], routes.one_leg_round)
    assert set(by_route.delivered_s) == set(one_leg.delivered_s) == {0, 1, 2}
    assert by_route.trips == 1 and one_leg.trips == 3
    assert all(by_route.delivered_s[leg.id] <= leg.due_s for leg in legs)
    assert by_route.km < 0.6 * one_leg.km


def test_the_stream_through_the_route_matcher_places_its_legs_and_reports_waits_and_pickups() -> None:
    pool = dispatch_stream.make_pool(40, seed=1)
    arrivals = dispatch_stream.make_arrivals(0.02, 1_800.0, seed=2)
    outcome = dispatch_stream.simulate_routes(pool, arrivals, duration_s=1_800.0, warmup_s=300.0, max_legs=3)
    measured = [a for a in arrivals if a.at_s >= 300.0]
    assert len(outcome.wait_s) == len(measured) > 0
    assert len(outcome.pickup_m) == len(measured) - outcome.unassigned
    assert all(w >= 0 for w in outcome.wait_s)
    summary = dispatch_stream._summary(outcome)
    assert summary["utilisation"] is None and summary["mean_pickup_m"] is not None


def test_the_round_cost_snapshots_hold_legs_with_drop_offs_and_routes_that_match_active_legs() -> None:
    legs, people, accepted = route_round.make_round(volunteers=400, carrying=0.5, seed=3)
    assert len(legs) == route_round.LEGS_PER_ROUND
    assert all(leg.dropoff_lat is not None and leg.dropoff_lon is not None for leg in legs)
    holders = {v.id: v for v in people if v.id in accepted}
    assert 100 < len(holders) < 300
    for vid, route in accepted.items():
        legs_held = {stop.leg_id for stop in route.stops}
        assert holders[vid].active_legs == len(legs_held) <= holders[vid].max_active_legs
        assert route.stops[0].kind == "dropoff"  # the first leg is on board already
    figures = route_round.measure(rounds=1, volunteers=400, carrying=0.5, repeats=1)
    assert figures["offers_per_round"]["routes"] > 0 and figures["routes_ms"]["p50"] > 0


def test_meals_posted_ahead_are_planned_to_set_off_in_time_and_carry_two_batches_in_one_trip() -> None:
    kitchen = east(0)
    legs = [
        routes.Delivery(
            i,
            kitchen,
            east(2.0 + 0.3 * i),
            11 * 3600.0 + 600 * (i // 2),  # two batches, ten minutes apart
            11 * 3600.0 + 600 * (i // 2) + routes.MEAL_WINDOW_S,
            0.6,
            meals=1,
        )
        for i in range(4)
    ]
    rider = routes.Rider(0, "bicycle", east(-1.0), 10.5 * 3600, 14.5 * 3600, 15.0)
    solves: list[float] = []
    ahead = routes.simulate(
        legs, [rider], routes.ahead_round(6, solves), announce_s=40 * 60, every_round=True
    )
    when_ready = routes.simulate(legs, [rider], routes.route_round(6))
    assert set(ahead.delivered_s) == {0, 1, 2, 3} and solves
    assert ahead.trips == 1  # waits at the kitchen for the second batch
    # Known only when ready, the second batch turns the volunteer round on their way out.
    assert ahead.km < when_ready.km
    ride_s = travel_time_s(haversine_m(*rider.home, *kitchen), "bicycle")
    for leg in legs:
        assert leg.ready_s + routes.SERVICE_S <= ahead.delivered_s[leg.id] <= leg.due_s
    # Given out together when it was time to set off for them, not when they became known (40
    # minutes before the first batch was ready).
    assert len(set(ahead.assigned_s.values())) == 1
    assert ahead.assigned_s[0] >= legs[0].ready_s - ride_s - routes.ROUND_S
