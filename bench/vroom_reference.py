"""VROOM (through `pyvroom`) as the reference planner for the route benchmarks; never used by the services.

A pickup-and-delivery instance: shipments (pickup, drop-off, an amount, time windows, service
times) and couriers (vehicle, start, shift, capacity, how many legs they may carry at once). The
travel model is the dispatcher's own (`services.dispatcher.domain.geo`): the straight-line
distance times the streets' detour, at the vehicle's speed. VROOM is given that as one duration
matrix per vehicle kind and one distance matrix, and minimises the distance ridden (its cost
matrix is the distance): the benchmarks compare volunteer-km, so the reference optimises them.

Every courier starts where they are and ends at their last stop (no ride home), as the
simulations count the distance. Capacity has two dimensions: the weight (in units of 100 g) and
the number of legs on board at once (`max_legs`, the analogue of `max_active_legs`).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import vroom

from services.dispatcher.domain.geo import SPEED_M_S, haversine_m, travel_time_s
from shared.geo import STREET_DETOUR

Point = tuple[float, float]  # (lat, lon)
WEIGHT_UNIT_KG = 0.1
EXPLORATION_LEVEL = 5


@dataclass(frozen=True)
class Shipment:
    id: int
    pickup: Point
    dropoff: Point
    weight_kg: float
    ready_s: int  # pickup not before (seconds since midnight)
    deliver_by_s: int  # drop-off service starts at the latest then
    service_s: int = 0  # at the pickup and again at the drop-off


@dataclass(frozen=True)
class Courier:
    id: int
    vehicle: str
    start: Point
    shift_from_s: int
    shift_until_s: int
    capacity_kg: float
    max_legs: int


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
    """VROOM's plan for the whole instance, every shipment known in advance."""
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
