"""Planning ahead with VROOM (through `pyvroom`): legs posted before they are ready, planned together.

A leg posted ahead of its pickup's `ready_at` (a kitchen's lunches, say, posted when the cooking
starts) is not matched by the round once ready, one round's legs at a time: every pass the
planner (`plan_ahead`) plans all such legs of the next hours for the volunteers available, VROOM
choosing who carries which legs in what order, and a volunteer is offered the first trip planned
for them once it is time to set off for it. Until then the legs stay pending, planned again with
whatever came in since: a volunteer waits at a kitchen for its next batch when that rides less.

The problem as VROOM sees it: shipments (pickup, drop-off, an amount, time windows, service
times) and couriers (vehicle, start, availability, capacity, how many legs they may carry at
once). The travel model is the dispatcher's own (`geo`): the straight-line distance times the
streets' detour, at the vehicle's speed, given as one duration matrix per vehicle kind and one
distance matrix, with the distance as the cost: the plan minimises the distance ridden. Every
courier starts where they are (or where their accepted route ends) and ends at their last stop.
Capacity has two dimensions: the weight (in units of 100 g) and the number of legs
(`max_legs`). Who may carry a leg at all (organisation, vehicle, skills, languages, the welfare
rules) is decided by the pairing rules (`matching.candidate_pairs`), given to VROOM as skills.

`make bench` also solves whole days with it offline, as the reference (`bench.routes`).
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from services.dispatcher.domain import routing
from services.dispatcher.domain.eligibility import Leg, Policy, free_slots
from services.dispatcher.domain.geo import SPEED_M_S, haversine_m, travel_time_s
from services.dispatcher.domain.matching import (
    AcceptedRoute,
    Match,
    Pool,
    candidate_pairs,
    courier,
    route_leg,
)
from shared.geo import STREET_DETOUR

Point = tuple[float, float]  # (lat, lon)
WEIGHT_UNIT_KG = 0.1
EXPLORATION_LEVEL = 5
# A leg posted ahead is the planner's until this long after it is ready; then the round's, like any
# other leg (the dispatcher's `DISPATCH_PLAN_HOLD_S`).
PLAN_HOLD_S = 30 * 60
# A planned trip is offered once its volunteer must set off for it within this: before the next
# plan (the dispatcher's `DISPATCH_PLAN_EVERY_S`).
SET_OFF_WITHIN_S = 15.0
# Candidates per leg given to the plan (the nearest eligible volunteers).
PLAN_CANDIDATES = 16
# The plan's wall-clock limit; VROOM returns its best plan so far then. And how hard it searches:
# a plan every pass at level 3 takes about half the time of the reference's level 5 and rides
# about 1 % more on the day of meals (`docs/performance.md`).
PLAN_TIMEOUT_S = 2.0
PLAN_EXPLORATION = 3


@dataclass(frozen=True)
class Shipment:
    id: int
    pickup: Point
    dropoff: Point
    weight_kg: float
    ready_s: int  # pickup not before (whole seconds, from any origin shared by the instance)
    deliver_by_s: int  # drop-off service starts at the latest then
    service_s: int = 0  # at the pickup and again at the drop-off
    skill: int | None = None  # only a courier with this skill may carry it


@dataclass(frozen=True)
class Courier:
    id: int
    vehicle: str
    start: Point
    shift_from_s: int
    shift_until_s: int
    capacity_kg: float
    max_legs: int
    skills: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Visit:
    shipment_id: int
    kind: str  # "pickup" | "dropoff"
    at_s: int  # when the service there starts
    place: Point


@dataclass
class Plan:
    routes: dict[int, list[Visit]] = field(default_factory=dict)  # courier id -> visits in order
    distance_m: dict[int, float] = field(default_factory=dict)  # courier id -> distance ridden
    unassigned: list[int] = field(default_factory=list)  # shipment ids
    solve_s: float = 0.0

    @property
    def total_m(self) -> float:
        return sum(self.distance_m.values())


def street_m(a: Point, b: Point) -> float:
    """The distance ridden between two points: the dispatcher's straight line times the streets' detour."""
    return haversine_m(a[0], a[1], b[0], b[1]) * STREET_DETOUR


def path_m(points: list[Point]) -> float:
    """The distance ridden through `points` in order."""
    return sum(street_m(a, b) for a, b in itertools.pairwise(points))


def _matrix_m(places: list[Point]) -> np.ndarray:
    """Straight-line metres between every pair of places (vectorised haversine)."""
    lat = np.radians([p[0] for p in places])
    lon = np.radians([p[1] for p in places])
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dlon / 2) ** 2
    metres: np.ndarray = 2 * 6_371_000.0 * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return metres


def _check_travel_model(straight: np.ndarray, vehicle: str, durations: np.ndarray) -> None:
    """The matrices are the dispatcher's `travel_time_s`, not a second model of it."""
    if straight.shape[0] > 1:
        expected = travel_time_s(float(straight[0, 1]), vehicle)
        assert abs(float(durations[0, 1]) - expected) <= 1.0, (durations[0, 1], expected)


def solve(
    shipments: list[Shipment],
    couriers: list[Courier],
    *,
    exploration_level: int = EXPLORATION_LEVEL,
    threads: int = 1,
    timeout_s: float | None = None,
) -> Plan:
    """VROOM's plan for the instance."""
    import vroom  # loaded with the other solvers at start-up (`matching.load_solvers`)

    places: list[Point] = []
    index: dict[Point, int] = {}

    def at(point: Point) -> int:
        if point not in index:
            index[point] = len(places)
            places.append(point)
        return index[point]

    for c in couriers:
        at(c.start)
    for s in shipments:
        at(s.pickup)
        at(s.dropoff)
    straight = _matrix_m(places)
    distances = np.rint(straight * STREET_DETOUR).astype(np.uint32)
    problem = vroom.Input()
    for vehicle in sorted({c.vehicle for c in couriers}):
        durations = np.rint(straight * STREET_DETOUR / SPEED_M_S[vehicle]).astype(np.uint32)
        _check_travel_model(straight, vehicle, durations)
        problem.set_durations_matrix(vehicle, durations)
        problem.set_distances_matrix(vehicle, distances)
        problem.set_costs_matrix(vehicle, distances)
    for c in couriers:
        problem.add_vehicle(
            vroom.Vehicle(
                c.id,
                start=at(c.start),
                profile=c.vehicle,
                capacity=vroom.Amount([int(c.capacity_kg / WEIGHT_UNIT_KG), c.max_legs]),
                time_window=vroom.TimeWindow(c.shift_from_s, c.shift_until_s),
                skills=set(c.skills),
            )
        )
    for s in shipments:
        # Pickup and drop-off ids must be distinct across all jobs: 2n and 2n + 1.
        problem.add_shipment(
            vroom.ShipmentStep(
                2 * s.id,
                at(s.pickup),
                default_service=s.service_s,
                time_windows=[vroom.TimeWindow(s.ready_s, s.deliver_by_s)],
            ),
            vroom.ShipmentStep(
                2 * s.id + 1,
                at(s.dropoff),
                default_service=s.service_s,
                time_windows=[vroom.TimeWindow(s.ready_s, s.deliver_by_s)],
            ),
            amount=vroom.Amount([math.ceil(s.weight_kg / WEIGHT_UNIT_KG), 1]),
            skills=set() if s.skill is None else {s.skill},
        )
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"exploration_level": exploration_level, "nb_threads": threads}
    if timeout_s is not None:
        kwargs["timeout"] = timedelta(seconds=timeout_s)
    solution = problem.solve(**kwargs).to_dict()
    plan = Plan(solve_s=time.perf_counter() - started)
    for route in solution["routes"]:
        visits = [
            Visit(
                shipment_id=step["id"] // 2,
                kind="pickup" if step["type"] == "pickup" else "dropoff",
                at_s=int(step["arrival"]) + int(step.get("waiting_time", 0)),
                place=places[step["location_index"]],
            )
            for step in route["steps"]
            if step["type"] in ("pickup", "delivery")
        ]
        courier = next(c for c in couriers if c.id == route["vehicle"])
        plan.routes[courier.id] = visits
        plan.distance_m[courier.id] = path_m([courier.start, *(v.place for v in visits)])
    plan.unassigned = sorted({job["id"] // 2 for job in solution.get("unassigned", [])})
    return plan


def plan_ahead(
    legs: list[Leg],
    pool: Pool,
    now: datetime,
    policy: Policy,
    routes: Mapping[uuid.UUID, AcceptedRoute],
    *,
    k: int = PLAN_CANDIDATES,
    set_off_within_s: float = SET_OFF_WITHIN_S,
    timeout_s: float | None = PLAN_TIMEOUT_S,
) -> list[Match]:
    """The trips to offer now, from a plan of all these legs (posted ahead, not yet offered).

    Each leg may go to its `k` nearest eligible volunteers in `pool` (`candidate_pairs`: its own
    organisation's, by the pairing rules); a volunteer is planned from where they are now, or from
    the end of the route they accepted (`routes`, by volunteer id) once they are through it, with
    the slots they have free now, until the end of their shift. A volunteer who must set off for
    their first planned trip (from where they are, or from their accepted route's last stop)
    within `set_off_within_s` is offered that trip: every leg of it as one route (their accepted
    route with the trip after it, when they have one), each pickup not before the leg is ready and
    each drop-off by its deadline. The rest waits for the next plan, where a volunteer through
    their route by then is planned from where they are. A trip that would break a route rule as
    the routes count it is not offered.
    """
    pairs = candidate_pairs(legs, pool, now, policy, k=k, defer=False)
    if not pairs:
        return []
    now_s = now.timestamp()
    origin = math.floor(now_s)
    horizon_s = now_s + timedelta(days=1).total_seconds()
    eligible: dict[int, set[int]] = {}
    for li, vi in pairs:
        eligible.setdefault(vi, set()).add(li)
    couriers: list[Courier] = []
    planned_from: dict[int, tuple[routing.Courier, AcceptedRoute | None, Point]] = {}
    for vi, theirs in eligible.items():
        v = pool.volunteers[vi]
        slots = free_slots(v)
        accepted = routes.get(v.id)
        held = sum(stop.kind == "dropoff" for stop in accepted.stops) if accepted is not None else 0
        here = courier(v, now, policy, max_legs=held + slots)
        start, free_s = (here.lat, here.lon), now_s
        if accepted is not None and accepted.stops:
            last = accepted.stops[-1]
            start, free_s = (last.lat, last.lon), max(now_s, routing.timeline(here, accepted.stops).end_s)
        until_s = min(here.shift_end_s, horizon_s)
        if slots <= 0 or until_s - free_s < 60:
            continue
        couriers.append(
            Courier(
                vi,
                v.vehicle,
                start,
                math.ceil(free_s - origin),
                math.floor(until_s - origin),
                v.capacity_kg,
                slots,
                frozenset(theirs),
            )
        )
        planned_from[vi] = (here, accepted, start)
    # Whole seconds for VROOM; a minute's margin on each deadline covers the rounding of its
    # travel times, so that the plan keeps every window as the routes count it. A leg nobody may
    # carry, or whose deadline leaves no time, is not planned (the round takes it once it has
    # been ready a while; escalation tells a person).
    planned = {li for theirs in eligible.values() for li in theirs}
    shipments = []
    for li, leg in enumerate(legs):
        ready_s = math.ceil(max(leg.ready_s, now_s) - origin)
        due_s = math.floor(min(leg.due_s, horizon_s) - origin) - 60
        if li in planned and due_s > ready_s:
            shipments.append(
                Shipment(
                    li,
                    (leg.pickup_lat, leg.pickup_lon),
                    (leg.dropoff_lat, leg.dropoff_lon)
                    if leg.dropoff_lat is not None and leg.dropoff_lon is not None
                    else (leg.pickup_lat, leg.pickup_lon),
                    leg.weight_kg,
                    ready_s,
                    due_s,
                    int(routing.SERVICE_S),
                    skill=li,
                )
            )
    if not couriers or not shipments:
        return []
    plan = solve(shipments, couriers, exploration_level=PLAN_EXPLORATION, timeout_s=timeout_s)
    matches: list[Match] = []
    for vi, visits in plan.routes.items():
        if not visits:
            continue
        here, accepted, start = planned_from[vi]
        v = pool.volunteers[vi]
        first = visits[0]
        set_off_s = origin + first.at_s - travel_time_s(haversine_m(*start, *first.place), v.vehicle)
        if set_off_s > now_s + set_off_within_s:
            continue  # not yet time to set off (nor through the route they carry): planned again
        trip: list[routing.Stop] = []
        on_board: set[int] = set()
        for visit in visits:  # the first trip: until nothing is on board again
            rl = route_leg(legs[visit.shipment_id])
            trip.append(rl.pickup if visit.kind == "pickup" else rl.dropoff)
            if visit.kind == "pickup":
                on_board.add(visit.shipment_id)
            else:
                on_board.discard(visit.shipment_id)
                if not on_board:
                    break
        stops = [*(accepted.stops if accepted is not None else ()), *trip]
        if routing.broken_rule(here, stops) is not None:
            continue
        route = routing.timeline(here, stops)
        distance_m = haversine_m(here.lat, here.lon, trip[0].lat, trip[0].lon)
        matches.extend(
            Match(
                legs[li].id,
                v.id,
                distance_m,
                0.0,
                route=route,
                route_id=accepted.id if accepted is not None else None,
            )
            for li in dict.fromkeys(visit.shipment_id for visit in visits[: len(trip)])
        )
    return matches
