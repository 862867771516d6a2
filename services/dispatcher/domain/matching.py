"""Batch matching: candidates from a spatial index, then an optimal assignment over them.

With routes (`match_batch(..., plan=True)`, the dispatcher's default) a volunteer may be offered
several legs at once, as a route (`domain/routing.py`): legs whose pickups lie close together are
planned into one route for each of a few candidate volunteers, and the assignment then chooses
among those routes and single legs. A volunteer already carrying an accepted route is only
offered a leg that fits into it (`routing.insert_leg`) without any accepted stop missing its
window, at the cost of the detour it adds (several legs from one pickup at once when they fit
together). Every route keeps the volunteer's capacity, free
slots, the legs' windows and the end of their shift. Routing work per round is bounded: a few
candidates per bundle and per leg, at most `MAX_ROUTE_LEGS` legs per route, and a wall-clock
budget (`ROUTING_BUDGET_S`) after which the round's remaining legs go one by one.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np

from services.dispatcher.domain import routing
from services.dispatcher.domain.eligibility import (
    Leg,
    Policy,
    Volunteer,
    available_until,
    duty_record,
    free_slots,
    is_available,
    suits,
)
from services.dispatcher.domain.geo import EARTH_RADIUS_M, haversine_m, travel_time_s, vehicle_satisfies
from services.dispatcher.domain.leg import PRIORITY_ORDER
from services.dispatcher.domain.welfare import local_day, shift_end

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

# Seconds of pickup time a priority is worth: a critical leg beats an urgent one even if its
# volunteer is an hour further away. Vulnerable recipients come first among equals.
PRIORITY_BONUS_S = {"critical": 7_200.0, "urgent": 3_600.0, "routine": 0.0}
VULNERABLE_BONUS_S = 600.0
# Each leg already done today makes a volunteer look 2 % further away: work is spread out among
# volunteers at similar distances without sending anyone much further (5 % added pickup distance at
# 50 % load in bench.dispatch_stream).
FAIRNESS_PER_LEG = 0.02
# Deferral under load. When a window has more legs waiting than volunteers free, volunteers are the
# scarce resource and a long pickup ties one up for that much longer: a far free volunteer is then not
# sent to a routine leg (the leg waits for a nearer one to come free), which keeps pickups short and
# frees capacity, so the queue drains faster than nearest-first. The acceptable pickup distance grows
# with the leg's wait, so nothing starves. Critical legs are never deferred, nor urgent legs that need
# a car or a van: a nearer one of the few is unlikely to come free soon, and the leg would wait while
# routine ones are offered (an urgent supply run waited for a car to come free within 2 km). An
# urgent leg any volunteer can carry is deferred as a routine one is: one nearer soon comes free.
DEFER_LOAD = 1.0  # deferral applies when legs in the window > DEFER_LOAD x volunteers available
DEFER_BASE_M = 2_000.0  # pickup distance always acceptable
DEFER_PER_WAIT_S_M = 3.0  # metres added per second the leg has waited (about 11 km after an hour)
DEFER_PRIORITIES = frozenset({"routine", "urgent"})


# Routes. Legs whose pickups are this close may share a route; at most this many legs in a route
# planned in one round; this many volunteers tried for each bundle, and this many of the nearest
# volunteers carrying a route tried for inserting each leg; and the wall-clock time a round may
# spend planning (then the rest goes one leg at a time).
BUNDLE_PICKUP_M = 500.0
MAX_ROUTE_LEGS = 10
ROUTE_CANDIDATES = 4
INSERT_CANDIDATES = 3
ROUTING_BUDGET_S = 0.03
# Deferral with routes. A volunteer with a free slot is rarely free: most carry a leg or two, so
# legs hardly ever outnumber the volunteers available and the rule of `DEFER_LOAD` never applies; a
# leg then goes at once to whoever has a slot, however far. So with routes a leg is also held back
# from a far volunteer while the legs waiting outnumber DEFER_IDLE_LOAD x the volunteers with
# nothing to do (a nearer one passing by or coming free is then likely). Not a leg with a deadline:
# its window is what waiting would spend (a day of meals loses its p90 with it).
DEFER_IDLE_LOAD = 0.2
# Critical legs go straight to their drop-off: never bundled with others in a new route.
UNBUNDLED_PRIORITIES = frozenset({"critical"})
# The reserve (`Policy.reserve_share`): the scarce vehicles kept idle for urgent and critical legs.
# Each class counts the volunteers whose vehicle does what it does (a van counts as a car too).
RESERVED_VEHICLES = ("car", "van")


@dataclass(frozen=True)
class Match:
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    distance_m: float
    cost: float
    # The whole route offered with this leg (the same object for legs offered together); None when
    # the round did not plan routes.
    route: routing.Route | None = None
    # The accepted route this leg would be inserted into; None for a new route.
    route_id: uuid.UUID | None = None


@dataclass(frozen=True)
class AcceptedRoute:
    """An accepted route: its stops still to do, in order (a leg picked up has only its drop-off)."""

    id: uuid.UUID
    stops: tuple[routing.Stop, ...]


def route_leg(leg: Leg) -> routing.RouteLeg:
    """The leg as a route sees it: picked up once ready, dropped off by its deadline, with its weight."""
    dropoff = (
        (leg.dropoff_lat, leg.dropoff_lon)
        if leg.dropoff_lat is not None and leg.dropoff_lon is not None
        else (leg.pickup_lat, leg.pickup_lon)
    )
    return routing.route_leg(
        leg.id,
        pickup=(leg.pickup_lat, leg.pickup_lon),
        dropoff=dropoff,
        ready_s=leg.ready_s,
        due_s=leg.due_s,
        weight_kg=leg.weight_kg,
    )


def courier(v: Volunteer, now: datetime, policy: Policy, *, max_legs: int) -> routing.Courier:
    """The volunteer as a route sees them: from where they are now, until the end of their shift."""
    assert v.lat is not None and v.lon is not None
    ends = shift_end(duty_record(v), now, policy.welfare_limits)
    return routing.Courier(
        v.lat,
        v.lon,
        v.vehicle,
        now.timestamp(),
        capacity_kg=v.capacity_kg,
        max_legs=max_legs,
        shift_end_s=ends.timestamp(),
    )


def pair_cost(v: Volunteer, leg: Leg, *, distance_m: float | None = None) -> tuple[float, float]:
    """(cost, distance in metres) of sending `v` to pick up `leg`; lower is better."""
    if distance_m is None:
        assert v.lat is not None
        assert v.lon is not None
        distance_m = haversine_m(v.lat, v.lon, leg.pickup_lat, leg.pickup_lon)
    eta = travel_time_s(distance_m, v.vehicle) * (1.0 + FAIRNESS_PER_LEG * v.legs_done_today)
    return eta - _bonus(leg), distance_m


def _bonus(leg: Leg) -> float:
    """Seconds of travel the leg's priority and recipient are worth (`pair_cost`)."""
    return PRIORITY_BONUS_S.get(leg.priority, 0.0) + (VULNERABLE_BONUS_S if leg.vulnerable else 0.0)


def acceptable_pickup_m(leg: Leg) -> float:
    """The farthest pickup worth sending someone on for `leg` while volunteers are scarce.

    Beyond it a nearer volunteer coming free is likely worth waiting for; the distance grows with
    the leg's wait so every leg is eventually offered to whoever is eligible. Critical legs, and
    urgent ones that need a car or a van, take whoever is eligible at once.
    """
    if leg.priority not in DEFER_PRIORITIES or (
        leg.priority == "urgent" and leg.vehicle in RESERVED_VEHICLES
    ):
        return math.inf
    return DEFER_BASE_M + DEFER_PER_WAIT_S_M * leg.waiting_s


def unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Unit-sphere points (one row each) for latitudes and longitudes in degrees, where chord length
    orders points as distance does."""
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack((np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)))


def _xyz(degrees: list[tuple[float, float]]) -> np.ndarray:
    """`unit_sphere` for (lat, lon) pairs."""
    lat, lon = np.array(degrees, dtype=float).reshape(-1, 2).T
    return unit_sphere(lat, lon)


def load_solvers() -> None:
    """Import the spatial index and the assignment solver (SciPy, a fifth of the dispatcher's
    import time). The functions below import them where they use them, so that a starting dispatcher
    does not wait for them before it joins its consumer group: the matcher calls this at start-up,
    in a thread, while the group join (which waits on the broker) goes on."""
    import vroom  # noqa: F401  (the planner's, `planning`)


def _arc_m(chord: float) -> float:
    """Great-circle distance for a chord between unit-sphere points (what the index measures)."""
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, chord / 2))


@dataclass(frozen=True)
class Team:
    """One organisation's available volunteers: an index of where they are, and their places in the pool."""

    index: cKDTree
    members: list[int]
    # How many of them have nothing to do: no leg, no offer open.
    idle: int = 0


def counted_today(v: Volunteer, today: date) -> Volunteer:
    """The volunteer with only the legs of the local day `today` weighing on fairness."""
    if v.legs_done_today and v.duty is not None and v.duty.legs_day != today:
        return replace(v, legs_done_today=0)
    return v


class Pool:
    """Who a round may offer legs to: the volunteers available at `now`, and where they are.

    It depends on the volunteers alone and costs time in proportion to everyone on duty, so the
    matcher builds it just before a round reads its legs: the legs then wait only for the work that
    grows with them. `volunteers` holds the available ones only; `teams` indexes them per
    organisation, since a leg may only go to a volunteer of the organisation that asked for it:
    a leg is looked up among its own organisation's volunteers, and others nearby cost nothing.
    """

    def __init__(
        self,
        volunteers: Iterable[Volunteer],
        now: datetime,
        policy: Policy,
        *,
        known: Sequence[bool] | None = None,
        points: np.ndarray | None = None,
    ) -> None:
        """`points`, when the caller holds them, are the volunteers' `unit_sphere` points, row for row
        (the roster keeps them as positions change; worked out here otherwise).

        With `known` (one flag per volunteer: found available by an earlier pool until past
        `now`, and unchanged since), a known volunteer is not asked the rules again, and each one
        asked is given in `found_until` with the time `eligibility.available_until` found, for the
        next pool: the rules change with time only in ways it foresees, and a view is replaced
        whenever its record or open offers change. Most of everyone on duty is then a lookup.
        """
        today = local_day(now, policy.welfare_limits)
        self.volunteers: list[Volunteer] = []
        # With `known`: for each volunteer asked (by their index in `volunteers` as given), the
        # timestamp until which they pass the volunteer-only rules; -inf when they do not now.
        self.found_until: dict[int, float] = {}
        # Per organisation (by the id's integer), for `_keep_reserve`: its cars and vans on duty, by
        # vehicle; those available with nothing in hand or offered, by vehicle; and the pool index
        # of each of those by their id's integer (a round asks of the few it matched, not of all).
        self.motor_on_duty: dict[int, dict[str, int]] = {}
        self.motor_idle_count: dict[int, dict[str, int]] = {}
        self.motor_idle: dict[int, dict[int, int]] = {}
        # Grouped by the ids' integers: a UUID hashes in Python code, several times slower with
        # everyone on duty to group.
        members: dict[int, list[int]] = {}
        idle: dict[int, int] = {}
        rows: list[int] = []  # of the volunteers kept, their places in `volunteers` as given
        for i, v in enumerate(volunteers):
            organisation = v.organisation_id.int
            motor = v.vehicle in RESERVED_VEHICLES and v.on_duty
            if motor:
                counts = self.motor_on_duty.setdefault(organisation, {})
                counts[v.vehicle] = counts.get(v.vehicle, 0) + 1
            if v.lat is None or v.lon is None:
                continue
            if known is None:
                if not is_available(v, now, policy):
                    continue
            elif not known[i]:
                until = available_until(v, now, policy)
                self.found_until[i] = -math.inf if until is None else until.timestamp()
                if until is None:
                    continue
            free = v.active_legs == 0 and v.live_offers == 0
            if motor and free:
                self.motor_idle.setdefault(organisation, {})[v.id.int] = len(self.volunteers)
                counts = self.motor_idle_count.setdefault(organisation, {})
                counts[v.vehicle] = counts.get(v.vehicle, 0) + 1
            members.setdefault(organisation, []).append(len(self.volunteers))
            if free:
                idle[organisation] = idle.get(organisation, 0) + 1
            self.volunteers.append(counted_today(v, today))
            rows.append(i)
        from scipy.spatial import cKDTree

        if points is None:
            points = _xyz([(v.lat, v.lon) for v in self.volunteers])  # type: ignore[misc]
        else:
            points = points[rows]
        self.teams = {
            # One organisation alone (the usual case) indexes the points as they are, not a copy.
            uuid.UUID(int=organisation): Team(
                cKDTree(points if len(members) == 1 else points[indices]), indices, idle.get(organisation, 0)
            )
            for organisation, indices in members.items()
        }


def candidate_pairs(
    legs: list[Leg], pool: Pool, now: datetime, policy: Policy, *, k: int = 16, defer: bool = True
) -> dict[tuple[int, int], tuple[float, float]]:
    """The k nearest eligible volunteers of each leg, as {(leg index, pool index): (cost, distance)}.

    Only the leg's own organisation's volunteers are candidates. The pool holds only volunteers who
    pass the volunteer-only rules; the pairing rules are checked on the nearest few of each leg,
    asking the index for more when too few of those qualify. When more of an organisation's legs
    wait than it has volunteers free, pairs beyond the leg's `acceptable_pickup_m` are left out
    (deferred to a later window), unless `defer` is off.
    """
    legs_of: dict[uuid.UUID, list[int]] = {}
    for li, leg in enumerate(legs):
        legs_of.setdefault(leg.organisation_id, []).append(li)
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    for organisation, leg_indices in legs_of.items():
        team = pool.teams.get(organisation)
        if team is not None:
            _team_pairs(legs, leg_indices, pool.volunteers, team, now, policy, k, pairs, defer=defer)
    return pairs


def _team_pairs(
    legs: list[Leg],
    leg_indices: list[int],
    available: list[Volunteer],
    team: Team,
    now: datetime,
    policy: Policy,
    k: int,
    pairs: dict[tuple[int, int], tuple[float, float]],
    *,
    defer: bool = True,
) -> None:
    """Add to `pairs` the k nearest eligible volunteers of `team` for each of these legs (all theirs)."""
    tree, members, size = team.index, team.members, len(team.members)
    points = _xyz([(legs[li].pickup_lat, legs[li].pickup_lon) for li in leg_indices])
    want = min(size, k * 2)
    chords, indices = tree.query(points, k=want)
    # Plain lists: iterating numpy scalars one by one is several times slower.
    chords = chords.reshape(len(leg_indices), want).tolist()
    indices = indices.reshape(len(leg_indices), want).tolist()
    crowded = defer and len(leg_indices) > DEFER_LOAD * size  # volunteers are scarce: far pickups wait
    for row, li in enumerate(leg_indices):
        leg = legs[li]
        row_chords, row_indices, asked, seen = chords[row], indices[row], want, 0
        found: list[tuple[int, float]] = []
        while True:
            for c, ti in zip(row_chords[seen:], row_indices[seen:], strict=True):
                vi = members[ti]
                if suits(available[vi], leg, now, policy):
                    found.append((vi, _arc_m(c)))
                    if len(found) == k:
                        break
            if len(found) >= k or asked >= size:
                break
            seen, asked = asked, min(size, asked * 4)
            more_chords, more_indices = tree.query(points[row], k=asked)
            row_chords, row_indices = more_chords.tolist(), more_indices.tolist()
        limit = acceptable_pickup_m(leg) if crowded else math.inf
        for vi, distance in found[:k]:
            if distance <= limit:
                pairs[(li, vi)] = pair_cost(available[vi], leg, distance_m=distance)


def defer_with_routes(
    legs: list[Leg], pool: Pool, pairs: dict[tuple[int, int], tuple[float, float]]
) -> dict[tuple[int, int], tuple[float, float]]:
    """`pairs` without those beyond the leg's `acceptable_pickup_m` while, in its organisation, the
    legs waiting outnumber `DEFER_IDLE_LOAD` x the volunteers with nothing to do (legs with no
    deadline only: see `DEFER_IDLE_LOAD`), and someone carrying legs may come by: with everyone
    free idle, no nearer volunteer is on the way and waiting would gain nothing."""
    count: dict[uuid.UUID, int] = {}
    for leg in legs:
        count[leg.organisation_id] = count.get(leg.organisation_id, 0) + 1
    crowded = {
        organisation
        for organisation, n in count.items()
        if organisation in pool.teams
        and n > DEFER_IDLE_LOAD * pool.teams[organisation].idle
        and len(pool.teams[organisation].members) > pool.teams[organisation].idle
    }
    if not crowded:
        return pairs
    limits = [
        acceptable_pickup_m(leg) if leg.organisation_id in crowded and math.isinf(leg.due_s) else math.inf
        for leg in legs
    ]
    return {(li, vi): value for (li, vi), value in pairs.items() if value[1] <= limits[li]}


Unit = tuple[int, ...]


def solve(
    legs: list[Leg], volunteers: list[Volunteer], pairs: dict[tuple[int, int], tuple[float, float]]
) -> list[Match]:
    """Minimum-cost assignment over the candidate pairs, at most one leg per volunteer per batch."""
    units: list[Unit] = [(li,) for li in sorted({li for li, _ in pairs})]
    unit_pairs: dict[tuple[Unit, int], tuple[float, float]] = {
        ((li,), vi): value for (li, vi), value in pairs.items()
    }
    return _solve_units(legs, volunteers, units, unit_pairs)


# Leaving a unit unplaced costs more than any real pairing could, so the solver places as many
# units as it can first and only then minimises their cost. Costs are shifted to stay positive:
# the sparse solver reads a zero as "no edge".
_UNPLACED_S = 1e7
_SHIFT_S = 1e6


def _solve_units(
    legs: list[Leg],
    volunteers: list[Volunteer],
    units: list[Unit],
    pairs: dict[tuple[Unit, int], tuple[float, float]],
    route_of: Callable[[Unit, int], tuple[routing.Route | None, uuid.UUID | None]] | None = None,
) -> list[Match]:
    """The assignment; `route_of` gives the route (and accepted route's id) a pair is offered with.

    Leaving a unit out costs as much per leg as it holds: a route of several legs is worth placing
    before a single one.
    """
    if not pairs:
        return []
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    vol_cols = sorted({vi for _, vi in pairs})
    row_of = {unit: r for r, unit in enumerate(units)}
    col_of = {vi: c for c, vi in enumerate(vol_cols)}
    rows = [row_of[unit] for unit, _ in pairs] + list(range(len(units)))
    cols = [col_of[vi] for _, vi in pairs] + [len(vol_cols) + r for r in range(len(units))]
    costs = [c + _SHIFT_S for c, _ in pairs.values()] + [_UNPLACED_S * len(unit) + _SHIFT_S for unit in units]
    graph = csr_array((costs, (rows, cols)), shape=(len(units), len(vol_cols) + len(units)))
    matched_rows, matched_cols = min_weight_full_bipartite_matching(graph)
    matches: list[Match] = []
    for r, c in zip(matched_rows, matched_cols, strict=True):
        if c >= len(vol_cols):
            continue  # the unit's own "unplaced" column
        unit, vi = units[r], vol_cols[c]
        cost, distance = pairs[(unit, vi)]
        share = cost / len(unit)
        route, route_id = route_of(unit, vi) if route_of is not None else (None, None)
        matches.extend(
            Match(legs[li].id, volunteers[vi].id, distance, share, route=route, route_id=route_id)
            for li in unit
        )
    return matches


def supply_run_bundles(legs: list[Leg]) -> list[Unit]:
    """Legs of one supply run in this batch (two or more), which one volunteer might carry together."""
    by_task: dict[object, list[int]] = {}
    for li, leg in enumerate(legs):
        if leg.kind == "supply_run":
            by_task.setdefault(leg.task_id, []).append(li)
    return [tuple(indices) for indices in by_task.values() if len(indices) >= 2]


def can_carry(v: Volunteer, bundle: list[Leg]) -> bool:
    """Enough free slots for every leg and enough capacity for all their loads at once."""
    return free_slots(v) >= len(bundle) and v.capacity_kg >= sum(leg.weight_kg for leg in bundle)


def bundle_cost(v: Volunteer, bundle: list[Leg]) -> tuple[float, float]:
    """One trip to the shared pickup serves every leg: the travel counts once, each leg's bonus counts."""
    first_cost, distance = pair_cost(v, bundle[0])
    bonuses = sum(pair_cost(v, leg)[0] - first_cost for leg in bundle[1:])
    return first_cost + bonuses, distance


def match_batch(
    legs: list[Leg],
    volunteers: Sequence[Volunteer] | Pool,
    now: datetime,
    policy: Policy,
    *,
    k: int = 16,
    plan: bool = False,
    pairs: dict[tuple[int, int], tuple[float, float]] | None = None,
    routes: Mapping[uuid.UUID, AcceptedRoute] | None = None,
) -> list[Match]:
    """Which volunteer to offer each leg in this batch; legs left out wait for the next one.

    `volunteers` may be a pool built ahead (`Pool`); a plain list is pooled here, at `now`; `pairs`
    may be `candidate_pairs` worked out ahead for these legs and this pool.

    With `plan`, the offers are routes (`match_routes`; `routes` holds the accepted routes of the
    volunteers carrying one, by volunteer id). Without, one leg at a time: legs of one supply run
    go to one volunteer together when someone eligible can carry them all; otherwise, and for every
    other leg, each leg is matched on its own.
    """
    pool = volunteers if isinstance(volunteers, Pool) else Pool(volunteers, now, policy)
    available = pool.volunteers
    if pairs is None:
        pairs = candidate_pairs(legs, pool, now, policy, k=k)
    if plan:
        matches = match_routes(
            legs, available, defer_with_routes(legs, pool, pairs), now, policy, routes or {}
        )
    else:
        matches = _match_one_by_one(legs, available, pairs)
    return _keep_reserve(legs, pool, matches, policy)


def _match_one_by_one(
    legs: list[Leg], available: list[Volunteer], pairs: dict[tuple[int, int], tuple[float, float]]
) -> list[Match]:
    """`match_batch` without routes: a supply run's legs together when one volunteer can carry them."""
    bundled: set[int] = set()
    units: list[Unit] = []
    unit_pairs: dict[tuple[Unit, int], tuple[float, float]] = {}
    for bundle in supply_run_bundles(legs):
        members = [legs[li] for li in bundle]
        shared = set.intersection(*({vi for (li2, vi) in pairs if li2 == li} for li in bundle))
        carriers = [vi for vi in shared if can_carry(available[vi], members)]
        if not carriers:
            continue
        units.append(bundle)
        bundled.update(bundle)
        for vi in carriers:
            unit_pairs[(bundle, vi)] = bundle_cost(available[vi], members)
    for li in sorted({li for li, _ in pairs} - bundled):
        units.append((li,))
    for (li, vi), value in pairs.items():
        if li not in bundled:
            unit_pairs[((li,), vi)] = value
    matches = _solve_units(legs, available, units, unit_pairs)
    if not bundled:
        return matches
    # Bundles nobody took this round: their legs may still go one by one to the volunteers left.
    placed = {m.leg_id for m in matches}
    busy = {m.volunteer_id for m in matches}
    leftover = {
        (li, vi): value
        for (li, vi), value in pairs.items()
        if li in bundled and legs[li].id not in placed and available[vi].id not in busy
    }
    return _before_lower_priority(legs, available, pairs, matches + solve(legs, available, leftover))


def _keep_reserve(legs: list[Leg], pool: Pool, matches: list[Match], policy: Policy) -> list[Match]:
    """`matches` less the routine ones that would leave too few idle cars or vans for pressing legs.

    Within a round an urgent or critical leg already goes first (`pair_cost`'s bonus,
    `_before_lower_priority`), but the next one may arrive a minute later, when the few cars and
    vans are all out on routine runs. So each organisation keeps `reserve_share` of its cars (vans
    included) and of its vans on duty idle for them: a routine leg that would take one of the last
    ones waits, the legs that waited least first, unless it has waited `reserve_wait_s`. Taking
    every pressing leg at once and letting routine ones wait for scarce vehicles is the trade made.
    """
    if policy.reserve_share <= 0 or not pool.motor_idle or not matches:
        return matches
    leg_of = {leg.id: leg for leg in legs}
    held: dict[uuid.UUID, list[Leg]] = {}
    for m in matches:
        held.setdefault(m.volunteer_id, []).append(leg_of[m.leg_id])
    released: set[uuid.UUID] = set()
    for organisation, idle in pool.motor_idle.items():
        on_duty = pool.motor_on_duty.get(organisation, {})
        idle_count = pool.motor_idle_count.get(organisation, {})
        need = {
            c: int(policy.reserve_share * sum(n for v, n in on_duty.items() if vehicle_satisfies(v, c)) + 0.5)
            for c in RESERVED_VEHICLES
        }
        # The idle cars and vans this round would take, in pool order; the others stay free.
        rows = sorted(idle[h.int] for h in held if h.int in idle)
        taken = [pool.volunteers[vi] for vi in rows]
        free = {
            c: sum(n for v, n in idle_count.items() if vehicle_satisfies(v, c))
            - sum(1 for v in taken if vehicle_satisfies(v.vehicle, c))
            for c in RESERVED_VEHICLES
        }
        if all(free[c] >= need[c] for c in RESERVED_VEHICLES):
            continue
        routine_only = [
            (max(leg.waiting_s for leg in held[v.id]), v)
            for v in taken
            if all(leg.priority == "routine" and leg.waiting_s < policy.reserve_wait_s for leg in held[v.id])
        ]
        routine_only.sort(key=lambda pair: pair[0])
        # The scarcest class first: a van held back counts for the cars' reserve too.
        for c in reversed(RESERVED_VEHICLES):
            for _, v in routine_only:
                if free[c] >= need[c]:
                    break
                if v.id in released or not vehicle_satisfies(v.vehicle, c):
                    continue
                released.add(v.id)
                for covered in RESERVED_VEHICLES:
                    free[covered] += vehicle_satisfies(v.vehicle, covered)
    return [m for m in matches if m.volunteer_id not in released] if released else matches


def _rank(leg: Leg) -> int:
    """The leg's place in `PRIORITY_ORDER` (0 first); a priority not listed comes after all."""
    return PRIORITY_ORDER.index(leg.priority) if leg.priority in PRIORITY_ORDER else len(PRIORITY_ORDER)


def _before_lower_priority(
    legs: list[Leg],
    available: list[Volunteer],
    pairs: dict[tuple[int, int], tuple[float, float]],
    matches: list[Match],
    route_of: Callable[[Unit, int], tuple[routing.Route | None, uuid.UUID | None]] | None = None,
) -> list[Match]:
    """`matches` with no volunteer holding lower-priority legs that a higher one left waiting could have.

    A supply run's (or a route's) legs are solved as one unit, so a volunteer who could take just
    one of them is not offered it in the same solve; when nobody takes the unit, that volunteer may
    already hold a routine leg while the run is urgent. And the solve places as many legs as it can
    before it weighs priorities, so a volunteer may carry a unit of two urgent legs while the one
    critical leg they alone could take waits. Each such leg (most pressing first) takes, from the
    volunteers whose legs this round are all of lower priority, the one it costs least, and their
    legs wait for the next round. `route_of` gives the route the leg is then offered with, as for
    `_solve_units`.
    """
    held: dict[uuid.UUID, list[int]] = {}
    for i, m in enumerate(matches):
        held.setdefault(m.volunteer_id, []).append(i)
    index_of = {leg.id: li for li, leg in enumerate(legs)}
    # The priority rank of each holder's most pressing leg this round.
    top = {
        volunteer_id: min(_rank(legs[index_of[matches[i].leg_id]]) for i in indices)
        for volunteer_id, indices in held.items()
    }
    placed = {m.leg_id for m in matches}
    candidates: dict[int, list[tuple[float, float, int]]] = {}
    for (li, vi), (cost, distance) in pairs.items():
        if legs[li].id not in placed and top.get(available[vi].id, -1) > _rank(legs[li]):
            candidates.setdefault(li, []).append((cost, distance, vi))
    if not candidates:
        return matches
    result: list[Match | None] = list(matches)
    for li in sorted(candidates, key=lambda li: (_rank(legs[li]), not legs[li].vulnerable)):
        lower = [
            (cost, distance, vi)
            for cost, distance, vi in candidates[li]
            if top.get(available[vi].id, -1) > _rank(legs[li])
        ]
        if not lower:
            continue
        cost, distance, vi = min(lower)
        volunteer_id = available[vi].id
        route, route_id = route_of((li,), vi) if route_of is not None else (None, None)
        first, *rest = held.pop(volunteer_id)
        del top[volunteer_id]
        result[first] = Match(legs[li].id, volunteer_id, distance, cost, route=route, route_id=route_id)
        for i in rest:
            result[i] = None
    return [m for m in result if m is not None]


def match_routes(
    legs: list[Leg],
    available: list[Volunteer],
    pairs: dict[tuple[int, int], tuple[float, float]],
    now: datetime,
    policy: Policy,
    routes: Mapping[uuid.UUID, AcceptedRoute],
) -> list[Match]:
    """The round's offers as routes: every match carries the route it is offered with.

    1. A volunteer carrying an accepted route is a candidate for a leg only if the leg fits into
       it (`routing.insert_leg`), at the cost of the travel it adds beyond the leg's own trip; the
       nearest `INSERT_CANDIDATES` such volunteers are tried per leg.
    2. Legs (not critical) whose pickups lie within `BUNDLE_PICKUP_M` of one another are planned
       into a route for the nearest candidate able to take two or more of them: a new route, or
       the volunteer's accepted route with them inserted (its stops kept in their order,
       `routing.insert_legs`), so that a route under way near the pickup takes a batch's legs
       together rather than one per round; the route's legs become one unit, offered to that
       volunteer or to another candidate who can carry them all, at the cost of the travel the
       legs add beyond their own trips (`_unit_cost`).
    3. Every other leg is a unit of its own; a volunteer is a candidate only if the leg alone keeps
       to the end of their shift. The assignment then chooses, one unit per volunteer; bundles
       nobody took go one by one to the volunteers left, and then to volunteers holding a single
       lower-priority leg, which waits for the next round (`_before_lower_priority`).
    """
    deadline = time.perf_counter() + ROUTING_BUDGET_S
    planner = _RoutePlanner(legs, available, now, policy, routes, deadline)
    pairs = planner.fit(pairs)
    units, unit_pairs, bundled = planner.bundles(pairs)
    for li in sorted({li for li, _ in pairs} - bundled):
        units.append((li,))
    for (li, vi), value in pairs.items():
        if li not in bundled:
            unit_pairs[((li,), vi)] = value
    matches = _solve_units(legs, available, units, unit_pairs, planner.route_for)
    if bundled:
        placed = {m.leg_id for m in matches}
        busy = {m.volunteer_id for m in matches}
        leftover: dict[tuple[Unit, int], tuple[float, float]] = {
            ((li,), vi): value
            for (li, vi), value in pairs.items()
            if li in bundled and legs[li].id not in placed and available[vi].id not in busy
        }
        units = sorted({unit for unit, _ in leftover})
        matches += _solve_units(legs, available, units, leftover, planner.route_for)
        # A route's legs were offered only together, so a volunteer who could take one of them
        # alone may hold a lower-priority leg now: the higher one takes them back.
        matches = _before_lower_priority(legs, available, pairs, matches, planner.route_for)
    return matches


class _RoutePlanner:
    """One round's route planning, under one wall-clock deadline."""

    def __init__(
        self,
        legs: list[Leg],
        available: list[Volunteer],
        now: datetime,
        policy: Policy,
        routes: Mapping[uuid.UUID, AcceptedRoute],
        deadline: float,
    ) -> None:
        self.legs, self.available, self.now, self.policy = legs, available, now, policy
        self.routes, self.deadline = routes, deadline
        self.route_legs = [route_leg(leg) for leg in legs]
        self.index_of = {leg.id: li for li, leg in enumerate(legs)}
        self.planned: dict[tuple[Unit, int], tuple[routing.Route | None, uuid.UUID | None]] = {}
        self._couriers: dict[int, routing.Courier] = {}
        # Each leg's own trip, pickup to drop-off, in metres, and the time spent at its two stops.
        self._own_m = [
            haversine_m(rl.pickup.lat, rl.pickup.lon, rl.dropoff.lat, rl.dropoff.lon)
            for rl in self.route_legs
        ]
        self._own_service_s = [rl.pickup.service_s + rl.dropoff.service_s for rl in self.route_legs]
        self._accepted: dict[int, AcceptedRoute | None] = {}
        self._shift_ends: dict[int, float] = {}
        self._base: dict[int, float] = {}
        self.now_s = now.timestamp()

    def accepted(self, vi: int) -> AcceptedRoute | None:
        """The route the volunteer accepted, if any (looked up once: ids hash slowly)."""
        if vi not in self._accepted:
            self._accepted[vi] = self.routes.get(self.available[vi].id) if self.routes else None
        return self._accepted[vi]

    def shift_end_s(self, vi: int) -> float:
        """When the volunteer's shift (or day on duty) ends, in POSIX seconds."""
        found = self._shift_ends.get(vi)
        if found is None:
            ends = shift_end(duty_record(self.available[vi]), self.now, self.policy.welfare_limits)
            found = self._shift_ends[vi] = ends.timestamp()
        return found

    def courier(self, vi: int) -> routing.Courier:
        """The volunteer as a route sees them, free slots and the legs on their accepted route counted."""
        found = self._couriers.get(vi)
        if found is None:
            v = self.available[vi]
            accepted = self.accepted(vi)
            # Every leg on a route has its drop-off still to do.
            held = sum(stop.kind == "dropoff" for stop in accepted.stops) if accepted is not None else 0
            assert v.lat is not None and v.lon is not None
            found = self._couriers[vi] = routing.Courier(
                v.lat,
                v.lon,
                v.vehicle,
                self.now_s,
                capacity_kg=v.capacity_kg,
                max_legs=held + free_slots(v),
                shift_end_s=self.shift_end_s(vi),
            )
        return found

    def fit(
        self, pairs: dict[tuple[int, int], tuple[float, float]]
    ) -> dict[tuple[int, int], tuple[float, float]]:
        """The pairs a route allows: insertion into an accepted route, or a lone leg within the shift."""
        kept: dict[tuple[int, int], tuple[float, float]] = {}
        tried: dict[int, int] = {}
        for (li, vi), value in pairs.items():  # each leg's candidates come nearest first
            v = self.available[vi]
            accepted = self.accepted(vi)
            if accepted is None:
                trip_m = value[1] + self._own_m[li]
                if self.now_s + travel_time_s(trip_m, v.vehicle) + self._own_service_s[
                    li
                ] <= self.shift_end_s(vi):
                    kept[(li, vi)] = value
                continue
            c = self.courier(vi)
            if tried.get(li, 0) >= INSERT_CANDIDATES or time.perf_counter() > self.deadline:
                continue
            tried[li] = tried.get(li, 0) + 1
            grown = routing.insert_leg(c, accepted.stops, self.route_legs[li])
            if grown is None:
                continue
            extra = grown.travel_s - self._base_s(vi) - travel_time_s(self._own_m[li], v.vehicle)
            kept[(li, vi)] = (
                extra * (1.0 + FAIRNESS_PER_LEG * v.legs_done_today) - _bonus(self.legs[li]),
                value[1],
            )
            self.planned[((li,), vi)] = (grown, accepted.id)
        return kept

    def bundles(
        self, pairs: dict[tuple[int, int], tuple[float, float]]
    ) -> tuple[list[Unit], dict[tuple[Unit, int], tuple[float, float]], set[int]]:
        """Units of two or more legs with close pickups, each with the volunteers who could carry it
        (in a new route, or inserted into the route they accepted)."""
        units: list[Unit] = []
        unit_pairs: dict[tuple[Unit, int], tuple[float, float]] = {}
        bundled: set[int] = set()
        candidates: dict[int, dict[int, float]] = {}  # leg -> {volunteer: distance}, two slots free or more
        for (li, vi), (_, distance) in pairs.items():
            if free_slots(self.available[vi]) >= 2:
                candidates.setdefault(li, {})[vi] = distance
        for cluster in self._clusters(
            [li for li in candidates if self.legs[li].priority not in UNBUNDLED_PRIORITIES]
        ):
            remaining = list(cluster)
            near: dict[int, float] = {}
            for li in cluster:
                for vi, distance in candidates[li].items():
                    near[vi] = min(distance, near.get(vi, math.inf))
            owners = 0
            for vi in sorted(near, key=near.__getitem__):
                if len(remaining) < 2 or owners >= ROUTE_CANDIDATES or time.perf_counter() > self.deadline:
                    break
                theirs = [li for li in remaining if vi in candidates[li]][:MAX_ROUTE_LEGS]
                if len(theirs) < 2:
                    continue
                owners += 1
                route = self._plan(vi, theirs)
                if route is None:
                    continue
                unit = self._unit_of(route)
                if len(unit) < 2:
                    continue
                units.append(unit)
                bundled.update(unit)
                remaining = [li for li in remaining if li not in unit]
                unit_pairs[(unit, vi)] = self._unit_cost(vi, unit, route)
                self.planned[(unit, vi)] = (route, self._route_id(vi))
                # Others who could carry the very same legs, for the assignment to choose among.
                tried = 1
                for wi in sorted(near, key=near.__getitem__):
                    if tried >= ROUTE_CANDIDATES or time.perf_counter() > self.deadline:
                        break
                    if wi == vi or any(wi not in candidates[li] for li in unit):
                        continue
                    tried += 1
                    theirs_too = self._plan(wi, list(unit))
                    if theirs_too is not None and self._unit_of(theirs_too) == unit:
                        unit_pairs[(unit, wi)] = self._unit_cost(wi, unit, theirs_too)
                        self.planned[(unit, wi)] = (theirs_too, self._route_id(wi))
        return units, unit_pairs, bundled

    def _plan(self, vi: int, indices: list[int]) -> routing.Route | None:
        """A new route of these legs for the volunteer, or their accepted route with them inserted."""
        legs = [self.route_legs[li] for li in indices]
        accepted = self.accepted(vi)
        if accepted is None:
            budget = min(routing.PLAN_BUDGET_S, max(0.0, self.deadline - time.perf_counter()))
            return routing.plan_route(self.courier(vi), legs, budget_s=budget)
        return routing.insert_legs(self.courier(vi), accepted.stops, legs)

    def _unit_of(self, route: routing.Route) -> Unit:
        """The legs of this round in a planned route (not those already accepted)."""
        return tuple(sorted(self.index_of[leg_id] for leg_id in route.leg_ids if leg_id in self.index_of))  # type: ignore[index]

    def _route_id(self, vi: int) -> uuid.UUID | None:
        accepted = self.accepted(vi)
        return None if accepted is None else accepted.id

    def _base_s(self, vi: int) -> float:
        """The travel time of the volunteer's accepted route from where they are (0 without one)."""
        found = self._base.get(vi)
        if found is None:
            accepted = self.accepted(vi)
            found = 0.0 if accepted is None else routing.timeline(self.courier(vi), accepted.stops).travel_s
            self._base[vi] = found
        return found

    def _unit_cost(self, vi: int, unit: Unit, route: routing.Route) -> tuple[float, float]:
        """The travel the legs add to the volunteer's route beyond each leg's own trip from pickup to
        drop-off, less each leg's bonus.

        For one leg that is the trip to its pickup, as `pair_cost` counts it; legs sharing trips
        save travel, legs carried one after another (too heavy together) add it.
        """
        v = self.available[vi]
        assert v.lat is not None and v.lon is not None
        first = next(stop for stop in route.stops if self.index_of.get(stop.leg_id) in unit)  # type: ignore[call-overload]
        distance = haversine_m(v.lat, v.lon, first.lat, first.lon)
        extra = (
            route.travel_s - self._base_s(vi) - sum(travel_time_s(self._own_m[li], v.vehicle) for li in unit)
        )
        extra *= 1.0 + FAIRNESS_PER_LEG * v.legs_done_today
        return extra - sum(_bonus(self.legs[li]) for li in unit), distance

    def _clusters(self, indices: list[int]) -> list[list[int]]:
        """Legs of one organisation whose pickups lie within `BUNDLE_PICKUP_M` of the first's, greedily."""
        clusters: list[list[int]] = []
        by_organisation: dict[uuid.UUID, list[int]] = {}
        for li in indices:
            by_organisation.setdefault(self.legs[li].organisation_id, []).append(li)
        from scipy.spatial import cKDTree

        chord = 2 * math.sin(BUNDLE_PICKUP_M / (2 * EARTH_RADIUS_M))
        for members in by_organisation.values():
            if len(members) < 2:
                continue
            points = _xyz([(self.legs[li].pickup_lat, self.legs[li].pickup_lon) for li in members])
            tree = cKDTree(points)
            taken = [False] * len(members)
            for i in range(len(members)):
                if taken[i]:
                    continue
                near = [j for j in sorted(tree.query_ball_point(points[i], chord)) if not taken[j]]
                near = near[: 2 * MAX_ROUTE_LEGS]
                if len(near) >= 2:
                    for j in near:
                        taken[j] = True
                    clusters.append([members[j] for j in near])
        return clusters

    def route_for(self, unit: Unit, vi: int) -> tuple[routing.Route | None, uuid.UUID | None]:
        """The route a chosen pair is offered with: the one planned, else the leg alone from where the
        volunteer is."""
        found = self.planned.get((unit, vi))
        if found is not None:
            return found
        (li,) = unit
        rl = self.route_legs[li]
        return routing.timeline(self.courier(vi), (rl.pickup, rl.dropoff)), None


__all__ = [
    "BUNDLE_PICKUP_M",
    "INSERT_CANDIDATES",
    "MAX_ROUTE_LEGS",
    "ROUTE_CANDIDATES",
    "ROUTING_BUDGET_S",
    "AcceptedRoute",
    "Match",
    "Pool",
    "Team",
    "acceptable_pickup_m",
    "bundle_cost",
    "can_carry",
    "candidate_pairs",
    "courier",
    "defer_with_routes",
    "match_batch",
    "match_routes",
    "pair_cost",
    "route_leg",
    "solve",
    "supply_run_bundles",
]
