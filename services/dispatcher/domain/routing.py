"""Routes: the order one volunteer visits the pickups and drop-offs of several legs. No IO here.

A route is an ordered list of stops: each leg has a pickup and a drop-off, and the pickup comes
first. A drop-off whose pickup is not in the route is a leg already in the volunteer's hands (its
weight is on board from the start). A route keeps every rule below, or it is not a route:

- precedence: every pickup before its own drop-off;
- capacity: the weight on board never above `Courier.capacity_kg`;
- count: no more distinct legs than `Courier.max_legs` (the volunteer's `max_active_legs`, less
  what they hold outside the route);
- windows: service at a stop starts no earlier than `Stop.earliest_s` (the volunteer waits) and
  no later than `Stop.latest_s` (a drop-off's deadline); then takes `Stop.service_s`;
- shift: the last stop is done by `Courier.shift_end_s` (the welfare rules' end of shift): a route
  that would run past it is not offered.

Times are plain seconds on one clock (POSIX seconds in the dispatcher, simulated seconds in the
benchmarks); travel between stops is the straight line by `geo.travel_time_s` for the vehicle.
A route's cost is its travel time (what VROOM minimises too), ties broken by when it ends.

Public API (kept stable: the benchmarks import it)::

    Stop(leg_id, kind, lat, lon, earliest_s=-inf, latest_s=inf, service_s=0.0, weight_kg=0.0)
    RouteLeg(pickup: Stop, dropoff: Stop)          # .id
    route_leg(leg_id, *, pickup, dropoff, ready_s=-inf, due_s=inf, weight_kg=0.0,
              service_s=SERVICE_S) -> RouteLeg
    Courier(lat, lon, vehicle, start_s, capacity_kg=inf, max_legs=1, shift_end_s=inf)
    Route(stops, etas, length_m, travel_s, end_s)  # .leg_ids
    timeline(courier, stops) -> Route               # ETAs of any order, no rule checked
    broken_rule(courier, stops) -> str | None       # the first rule an order breaks
    plan_route(courier, legs, *, budget_s=PLAN_BUDGET_S) -> Route | None
    insert_leg(courier, route, leg) -> Route | None
    insert_legs(courier, route, legs) -> Route | None
    remove_leg(courier, route, leg_id, *, budget_s=PLAN_BUDGET_S) -> Route

Why our own insertion and local search, not VROOM or OR-Tools at run time: a round plans a few
small routes per volunteer (a handful of legs, a few dozen stops at most) under a budget of a few
milliseconds each, and it needs two things the general solvers make awkward: insertion into an
accepted route that must keep its order, and an answer within a hard time box. Cheapest
insertion with exact travel deltas, then relocating legs and single stops while that improves the
route, is the textbook heuristic for small pickup-and-delivery problems and is within a few per
cent of optimal there; `bench/` measures it against VROOM on the same instances. No compiled
dependency, no process or thread per solve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from services.dispatcher.domain.geo import haversine_m, travel_time_s

StopKind = Literal["pickup", "dropoff"]

# Time spent at a stop to hand goods over (find the door, the code, a signature).
SERVICE_S = 120.0
# Wall-clock budget for one route's local search: the round plans many.
PLAN_BUDGET_S = 0.004


@dataclass(frozen=True, slots=True)
class Stop:
    """One visit: where, what for (the pickup or the drop-off of `leg_id`), when, and what it carries."""

    leg_id: Hashable
    kind: StopKind
    lat: float
    lon: float
    earliest_s: float = -math.inf
    latest_s: float = math.inf
    service_s: float = 0.0
    weight_kg: float = 0.0


@dataclass(frozen=True, slots=True)
class RouteLeg:
    """A leg as a route sees it: its two stops."""

    pickup: Stop
    dropoff: Stop

    @property
    def id(self) -> Hashable:
        return self.pickup.leg_id


def route_leg(
    leg_id: Hashable,
    *,
    pickup: tuple[float, float],
    dropoff: tuple[float, float],
    ready_s: float = -math.inf,
    due_s: float = math.inf,
    weight_kg: float = 0.0,
    service_s: float = SERVICE_S,
) -> RouteLeg:
    """A leg picked up at `pickup` (lat, lon) once ready, and dropped off at `dropoff` by `due_s`."""
    return RouteLeg(
        Stop(
            leg_id,
            "pickup",
            pickup[0],
            pickup[1],
            earliest_s=ready_s,
            service_s=service_s,
            weight_kg=weight_kg,
        ),
        Stop(
            leg_id,
            "dropoff",
            dropoff[0],
            dropoff[1],
            latest_s=due_s,
            service_s=service_s,
            weight_kg=weight_kg,
        ),
    )


@dataclass(frozen=True, slots=True)
class Courier:
    """Who a route is for: where they are at `start_s`, how they travel, what they may carry."""

    lat: float
    lon: float
    vehicle: str
    start_s: float
    capacity_kg: float = math.inf
    max_legs: int = 1
    shift_end_s: float = math.inf


@dataclass(frozen=True, slots=True)
class Route:
    """Stops in order, when service starts at each, and the whole route's length and travel time."""

    stops: tuple[Stop, ...]
    etas: tuple[float, ...]
    length_m: float
    travel_s: float
    end_s: float

    @property
    def leg_ids(self) -> tuple[Hashable, ...]:
        """The route's legs, in the order their first stop comes."""
        return tuple(dict.fromkeys(stop.leg_id for stop in self.stops))


def _cost(route: Route) -> tuple[float, float]:
    return route.travel_s, route.end_s


def timeline(courier: Courier, stops: Sequence[Stop]) -> Route:
    """The route through `stops` in this order from where the courier is: ETAs, length and travel.

    No rule is checked (`broken_rule` does): the ETAs of a route already under way, say.
    """
    lat, lon, clock = courier.lat, courier.lon, courier.start_s
    etas: list[float] = []
    length = travel = 0.0
    for stop in stops:
        metres = haversine_m(lat, lon, stop.lat, stop.lon)
        seconds = travel_time_s(metres, courier.vehicle)
        length += metres
        travel += seconds
        start = max(clock + seconds, stop.earliest_s)
        etas.append(start)
        clock = start + stop.service_s
        lat, lon = stop.lat, stop.lon
    return Route(tuple(stops), tuple(etas), length, travel, clock)


def broken_rule(courier: Courier, stops: Sequence[Stop]) -> str | None:
    """The first rule the order breaks: precedence, capacity, count, window or shift; None if none."""
    return _check(courier, stops, timeline(courier, stops))


def _check(courier: Courier, stops: Sequence[Stop], route: Route) -> str | None:
    picked: set[Hashable] = set()
    dropped: set[Hashable] = set()
    legs: set[Hashable] = set()
    for stop in stops:
        legs.add(stop.leg_id)
        if stop.kind == "pickup":
            if stop.leg_id in picked or stop.leg_id in dropped:
                return "precedence"
            picked.add(stop.leg_id)
        else:
            if stop.leg_id in dropped:
                return "precedence"
            dropped.add(stop.leg_id)
    if picked - dropped:
        return "precedence"  # picked up and never dropped off
    if len(legs) > courier.max_legs:
        return "count"
    load = sum(stop.weight_kg for stop in stops if stop.kind == "dropoff" and stop.leg_id not in picked)
    if load > courier.capacity_kg + 1e-9:
        return "capacity"
    for stop, eta in zip(stops, route.etas, strict=True):
        load += stop.weight_kg if stop.kind == "pickup" else -stop.weight_kg
        if load > courier.capacity_kg + 1e-9:
            return "capacity"
        if eta > stop.latest_s + 1e-6:
            return "window"
    if route.end_s > courier.shift_end_s + 1e-6:
        return "shift"
    return None


class _Plan:
    """A working route over a fixed set of points: legs move in and out, checks reuse one distance table.

    Node 0 is the courier; every stop is a node. Insertion tries positions by their exact change
    in travel time, cheapest first, and checks the rules only on those, stopping at the first
    that keeps them all: the cheapest feasible position.
    """

    def __init__(self, courier: Courier, stops: Sequence[Stop]) -> None:
        self.courier = courier
        self.stops = list(stops)
        points = [(courier.lat, courier.lon)] + [(s.lat, s.lon) for s in self.stops]
        n = len(points)
        self.seconds = [[0.0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                t = travel_time_s(haversine_m(*points[i], *points[j]), courier.vehicle)
                self.seconds[i][j] = self.seconds[j][i] = t
        self.index = {(s.leg_id, s.kind): i + 1 for i, s in enumerate(self.stops)}
        # By node (0 is the courier): what feasibility reads, as plain lists.
        self.delta = [0.0] + [s.weight_kg if s.kind == "pickup" else -s.weight_kg for s in self.stops]
        self.is_dropoff = [False] + [s.kind == "dropoff" for s in self.stops]
        # A drop-off whose pickup is not among the nodes: that leg is on board from the start.
        self.on_board = [0.0] + [
            s.weight_kg if s.kind == "dropoff" and (s.leg_id, "pickup") not in self.index else 0.0
            for s in self.stops
        ]
        self.earliest = [0.0] + [s.earliest_s for s in self.stops]
        self.latest = [0.0] + [s.latest_s for s in self.stops]
        self.service = [0.0] + [s.service_s for s in self.stops]

    def feasible(self, seq: Sequence[int]) -> bool:
        """Whether the order keeps every rule. Orders built here keep precedence by construction and
        hold each leg's drop-off, so legs are counted by drop-offs."""
        c = self.courier
        legs, load = 0, 0.0
        for n in seq:
            if self.is_dropoff[n]:
                legs += 1
                load += self.on_board[n]
        if legs > c.max_legs or load > c.capacity_kg + 1e-9:
            return False
        seconds, delta, earliest, latest, service = (
            self.seconds,
            self.delta,
            self.earliest,
            self.latest,
            self.service,
        )
        capacity = c.capacity_kg + 1e-9
        clock, here = c.start_s, 0
        for n in seq:
            load += delta[n]
            if load > capacity:
                return False
            start = clock + seconds[here][n]
            if start < earliest[n]:
                start = earliest[n]
            if start > latest[n] + 1e-6:
                return False
            clock, here = start + service[n], n
        return clock <= c.shift_end_s + 1e-6

    def travel(self, seq: Sequence[int]) -> float:
        total, here = 0.0, 0
        for n in seq:
            total += self.seconds[here][n]
            here = n
        return total

    def best_insertion(self, seq: list[int], p: int, d: int) -> tuple[float, list[int]] | None:
        """The cheapest feasible sequence with pickup node `p` then drop-off node `d` put into `seq`."""
        s = self.seconds
        m = len(seq)
        prev = [0, *seq]  # prev[i]: the node before position i
        options: list[tuple[float, int, int]] = []
        for i in range(m + 1):
            a = prev[i]
            b = seq[i] if i < m else None
            # Pickup then drop-off side by side at position i.
            tail = s[d][b] - s[a][b] if b is not None else 0.0
            options.append((s[a][p] + s[p][d] + tail, i, i))
            if b is None:
                continue
            gain_p = s[a][p] + s[p][b] - s[a][b]
            for j in range(i + 1, m + 1):
                c = seq[j - 1]
                e = seq[j] if j < m else None
                gain_d = s[c][d] + (s[d][e] - s[c][e] if e is not None else 0.0)
                options.append((gain_p + gain_d, i, j))
        options.sort()
        for delta, i, j in options:
            candidate = [*seq[:i], p, *seq[i:j], d, *seq[j:]]
            if self.feasible(candidate):
                return delta, candidate
        return None

    def best_stop_insertion(self, seq: list[int], n: int, lo: int, hi: int) -> list[int] | None:
        """The cheapest feasible sequence with node `n` put between positions lo and hi (inclusive)."""
        s = self.seconds
        prev = [0, *seq]
        options = []
        for i in range(lo, hi + 1):
            a = prev[i]
            b = seq[i] if i < len(seq) else None
            delta = s[a][n] + (s[n][b] - s[a][b] if b is not None else 0.0)
            options.append((delta, i))
        options.sort()
        for _, i in options:
            candidate = [*seq[:i], n, *seq[i:]]
            if self.feasible(candidate):
                return candidate
        return None

    def improve(self, seq: list[int], deadline: float) -> list[int]:
        """Relocate legs, then single stops, while that shortens the route and time is left."""
        best = self.travel(seq)
        improved = True
        while improved and time.perf_counter() < deadline:
            improved = False
            for leg_id in list(dict.fromkeys(self.stops[n - 1].leg_id for n in seq)):
                if time.perf_counter() >= deadline:
                    return seq
                p = self.index.get((leg_id, "pickup"))
                d = self.index[(leg_id, "dropoff")]
                if p is None or p not in seq:
                    continue
                rest = [n for n in seq if n != p and n != d]
                found = self.best_insertion(rest, p, d)
                if found is not None and self.travel(found[1]) < best - 1e-9:
                    seq, best, improved = found[1], self.travel(found[1]), True
            for n in list(seq):
                if time.perf_counter() >= deadline:
                    return seq
                stop = self.stops[n - 1]
                rest = [x for x in seq if x != n]
                partner = self.index.get((stop.leg_id, "dropoff" if stop.kind == "pickup" else "pickup"))
                lo, hi = 0, len(rest)
                if partner is not None and partner in rest:
                    if stop.kind == "pickup":
                        hi = rest.index(partner)
                    else:
                        lo = rest.index(partner) + 1
                moved = self.best_stop_insertion(rest, n, lo, hi)
                if moved is not None and self.travel(moved) < best - 1e-9:
                    seq, best, improved = moved, self.travel(moved), True
        return seq

    def route(self, seq: Sequence[int]) -> Route:
        return timeline(self.courier, [self.stops[n - 1] for n in seq])


def plan_route(
    courier: Courier,
    legs: Sequence[RouteLeg],
    *,
    budget_s: float = PLAN_BUDGET_S,
) -> Route | None:
    """The best route found for the courier carrying as many of `legs` as the rules allow.

    Cheapest insertion: at each step the leg whose best position adds the least travel goes in
    (earlier legs in `legs` win ties, so pass them in order of precedence); a leg that fits
    nowhere is left out. Then local search (`_Plan.improve`) until nothing improves or `budget_s`
    of wall-clock time is spent. The insertion itself is not cut short: on a busy machine a
    deadline would leave a supply run's later checkpoints to other cars, each driving out to the
    same depot (callers bound the legs passed, `matching.MAX_ROUTE_LEGS`). None when no leg fits.
    """
    deadline = time.perf_counter() + budget_s
    plan = _Plan(courier, [stop for leg in legs for stop in (leg.pickup, leg.dropoff)])
    seq, _ = _insert_cheapest(plan, [], 0, len(legs), max_added=courier.max_legs)
    if not seq:
        return None
    return plan.route(plan.improve(seq, deadline))


def _insert_cheapest(
    plan: _Plan,
    seq: list[int],
    base: int,
    count: int,
    *,
    max_added: float = math.inf,
) -> tuple[list[int], list[int]]:
    """Cheapest insertion into `seq` of `count` legs whose stops are `plan`'s `base + 2k + 1` and
    `base + 2k + 2`: at each step the leg whose best position adds the least travel goes in (earlier
    legs win ties); a leg that fits nowhere is left out. Stops after `max_added` legs. Returns the
    order and the legs added."""
    waiting = list(range(count))
    added: list[int] = []
    while waiting and len(added) < max_added:
        best: tuple[float, int, list[int]] | None = None
        for k in waiting:
            found = plan.best_insertion(seq, base + 2 * k + 1, base + 2 * k + 2)
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], k, found[1])
        if best is None:
            break
        seq = best[2]
        waiting.remove(best[1])
        added.append(best[1])
    return seq, added


def insert_leg(courier: Courier, route: Route | Sequence[Stop], leg: RouteLeg) -> Route | None:
    """The route with `leg` added at its cheapest position, the accepted stops kept in their order.

    None when every position breaks a rule: an accepted stop would miss its window, the load or
    count would go over, or the route would run past the end of shift.
    """
    stops = route.stops if isinstance(route, Route) else tuple(route)
    if any(stop.leg_id == leg.id for stop in stops):
        return None
    plan = _Plan(courier, [*stops, leg.pickup, leg.dropoff])
    found = plan.best_insertion(list(range(1, len(stops) + 1)), len(stops) + 1, len(stops) + 2)
    return None if found is None else plan.route(found[1])


def insert_legs(courier: Courier, route: Route | Sequence[Stop], legs: Sequence[RouteLeg]) -> Route | None:
    """The route with as many of `legs` as the rules allow added, the accepted stops kept in their order.

    Cheapest insertion as `plan_route` does it, starting from the accepted stops: at each step the
    leg whose best position adds the least travel goes in; a leg that fits nowhere is left out.
    Like `plan_route`'s, the insertion is not cut by the clock: on a busy machine a batch would
    otherwise go to a route under way one leg at a time. None when no leg fits.
    """
    stops = tuple(route.stops if isinstance(route, Route) else route)
    held = {stop.leg_id for stop in stops}
    legs = [leg for leg in legs if leg.id not in held]
    plan = _Plan(courier, [*stops, *(stop for leg in legs for stop in (leg.pickup, leg.dropoff))])
    base = len(stops)
    seq, added = _insert_cheapest(plan, list(range(1, base + 1)), base, len(legs))
    if not added:
        return None
    return plan.route(seq)


def remove_leg(
    courier: Courier, route: Route | Sequence[Stop], leg_id: Hashable, *, budget_s: float = PLAN_BUDGET_S
) -> Route:
    """The route without `leg_id`'s stops, re-ordered when a better order keeps every rule.

    Taking stops out never makes the others later, so the remaining order stays a route when the
    old one was; the ETAs are recomputed from where the courier is now.
    """
    deadline = time.perf_counter() + budget_s
    stops = [stop for stop in (route.stops if isinstance(route, Route) else route) if stop.leg_id != leg_id]
    plan = _Plan(courier, stops)
    seq = list(range(1, len(stops) + 1))
    if plan.feasible(seq):
        seq = plan.improve(seq, deadline)
    return plan.route(seq)


__all__ = [
    "PLAN_BUDGET_S",
    "SERVICE_S",
    "Courier",
    "Route",
    "RouteLeg",
    "Stop",
    "StopKind",
    "broken_rule",
    "insert_leg",
    "insert_legs",
    "plan_route",
    "remove_leg",
    "route_leg",
    "timeline",
]
