"""Dispatch under a stream of arrivals: the batch matcher against greedy nearest-first, same arrivals.

An offline discrete-time simulation (pure Python, seeded, no services). The model:

- A fixed pool of volunteers on duty around Ningbo's district centres (`dispatch_quality`'s
  placement and vehicle mix), one leg at a time each (`max_active_legs=1`), who never go off duty.
- Legs arrive as a Poisson stream, pickups around the same centres, each with a drop-off a
  couple of kilometres away. Requirements are drawn per leg (mostly any vehicle; a few need a
  bicycle, car or van, a language, a weight some vehicles cannot carry).
- A volunteer given a leg is busy for its service time: the ride to the pickup at their vehicle's
  speed (`travel_time_s`, detour factor included), the ride to the drop-off, and a fixed handling
  time. They become free again at the drop-off, where the next leg finds them. Offers are
  accepted at once (no declines, no expiries): this measures the matching, not the volunteers.
- Every window (500 ms simulated) both policies look at the legs waiting and the volunteers free,
  under the same eligibility rules (`is_eligible`, radius widening while a leg waits):
  batch:  the production `match_batch` (k nearest eligible per leg, then an optimal assignment;
          its cost includes the priority, vulnerability and fairness terms, as in production);
  greedy: legs oldest first, each takes the nearest eligible volunteer still free.
  The same window cadence for both keeps the comparison about the assignment, not the clock.
- Utilisation = busy volunteer-time / total volunteer-time over the measured period (after a
  warm-up). The arrival rate of each load point is calibrated so that *greedy* (the baseline)
  runs at the target utilisation; batch then sees the very same arrivals, and its own
  utilisation is reported beside it (lower when its pickups are shorter: same work, less driving).
- At the 95 % point the same arrivals also go through the route matcher (`match_batch(...,
  plan=True)`), volunteers carrying up to `ROUTE_MAX_LEGS` legs at once, played by
  `bench.routes.simulate` (`simulate_routes`): a volunteer is no longer held for a whole trip by
  one leg. Its utilisation is not reported (busy time has no single meaning with routes).
- Wait = arrival -> assignment. Legs still waiting at the end count with the wait they had so far
  (a lower bound), and how many there were is reported.

Run: `.venv/bin/python -m bench.dispatch_stream [--quick]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import multiprocessing
import os
import statistics
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench import routes
from bench.dispatch_quality import BATCH_LIMIT, CANDIDATES_K, CAPACITY_KG, ORGANISATION, _around
from services.dispatcher.domain.eligibility import Leg, Policy, Volunteer, is_eligible, widen_search_radius
from services.dispatcher.domain.geo import (
    EARTH_RADIUS_M,
    SEARCH_RADIUS_M,
    VEHICLE_ORDER,
    haversine_m,
    travel_time_s,
)
from services.dispatcher.domain.matching import match_batch

WINDOW_S = 0.5
HANDLING_S = 120.0  # at the pickup and at the door, whoever does it
DROPOFF_SPREAD_KM = 1.5  # per axis: drop-offs about 2 km from the pickup on average
EPOCH = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
POLICY = Policy()
# Legs a volunteer may carry at once in the route case: `max_active_legs`' default for a new volunteer.
ROUTE_MAX_LEGS = 3
TARGETS = {"95": {"distance": 0.35, "wait": 0.25}, "50": {"distance": 1.02}}
LOAD_POINTS = {"50": 0.50, "95": 0.95}  # greedy's utilisation at each, lowest first
# Processes for the simulations: a core each where there are two (the route matcher's wall-clock
# budgets must not share one).
WORKERS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Arrival:
    at_s: float
    leg: Leg
    dropoff: tuple[float, float]


@dataclass
class Outcome:
    pickup_m: list[float]
    wait_s: list[float]
    unassigned: int
    utilisation: float
    matcher_s: float


def make_pool(volunteers: int, *, seed: int) -> list[Volunteer]:
    """The volunteers on duty, placed and equipped as in the dispatch-quality snapshots."""
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(volunteers):
        lat, lon = _around(rng)
        vehicle = str(rng.choice(VEHICLE_ORDER, p=[0.2, 0.3, 0.3, 0.15, 0.05]))
        pool.append(
            Volunteer(
                id=uuid.UUID(int=1_000_000 + i),
                organisation_id=ORGANISATION,
                on_duty=True,
                insured=True,
                vehicle=vehicle,
                capacity_kg=CAPACITY_KG[vehicle],
                skills=frozenset(),
                languages=frozenset({"zh", "en"} if rng.random() < 0.3 else {"zh"}),
                max_active_legs=1,
                active_legs=0,
                live_offers=0,
                lat=lat,
                lon=lon,
                location_at=EPOCH,
                duty_started_at=None,  # the shift cap is not what this measures
                rest_until=None,
            )
        )
    return pool


def make_arrivals(rate_per_s: float, duration_s: float, *, seed: int) -> list[Arrival]:
    """A seeded Poisson stream of legs: the same seed and rate give the same arrivals."""
    rng = np.random.default_rng(seed)
    arrivals: list[Arrival] = []
    at = 0.0
    i = 0
    while True:
        at += float(rng.exponential(1.0 / rate_per_s))
        if at >= duration_s:
            return arrivals
        lat, lon = _around(rng)
        north_km, east_km = rng.normal(0.0, DROPOFF_SPREAD_KM, size=2)
        dropoff = (lat + north_km / 111.0, lon + east_km / (111.0 * math.cos(math.radians(lat))))
        leg = Leg(
            id=uuid.UUID(int=i),
            task_id=uuid.UUID(int=i),
            organisation_id=ORGANISATION,
            priority=str(rng.choice(["routine", "urgent", "critical"], p=[0.7, 0.22, 0.08])),
            pickup_lat=lat,
            pickup_lon=lon,
            vehicle=[None, "bicycle", "car", "van"][int(rng.choice(4, p=[0.85, 0.05, 0.08, 0.02]))],
            weight_kg=float(rng.uniform(0.5, 12.0)),
            skills=frozenset(),
            languages=frozenset({"en"} if rng.random() < 0.1 else {"zh"}),
            vulnerable=bool(rng.random() < 0.15),
        )
        arrivals.append(Arrival(at, leg, dropoff))
        i += 1


def _greedy(legs: list[Leg], free: list[Volunteer], now: datetime) -> list[tuple[Leg, Volunteer, float]]:
    """Oldest leg first, each to the nearest eligible volunteer still free.

    The pairing rules of `eligibility.PAIR_RULES` vectorised over the free volunteers (every one of
    them passes the volunteer-only rules in this model: on duty, insured, a free slot, no shift cap,
    a fresh fix); every choice is re-checked against `is_eligible` itself.
    """
    lat = np.radians([v.lat or 0.0 for v in free])  # every volunteer here has a fix
    lon = np.radians([v.lon or 0.0 for v in free])
    vehicle = np.array([VEHICLE_ORDER.index(v.vehicle) for v in free])
    base_radius = np.array([SEARCH_RADIUS_M[v.vehicle] for v in free])
    capacity = np.array([v.capacity_kg for v in free])
    languages = [v.languages for v in free]
    taken = np.zeros(len(free), dtype=bool)
    chosen = []
    for leg in legs:
        la, lo = math.radians(leg.pickup_lat), math.radians(leg.pickup_lon)
        a = np.sin((lat - la) / 2) ** 2 + np.cos(la) * np.cos(lat) * np.sin((lon - lo) / 2) ** 2
        distance = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
        ok = ~taken & (capacity >= leg.weight_kg)
        ok &= distance <= base_radius * widen_search_radius(leg.waiting_s, POLICY)
        if leg.vehicle is not None:
            ok &= vehicle >= VEHICLE_ORDER.index(leg.vehicle)
        if leg.languages:
            ok &= np.array([leg.languages <= spoken for spoken in languages])
        if not ok.any():
            continue
        best = int(np.argmin(np.where(ok, distance, np.inf)))
        assert is_eligible(free[best], leg, now, POLICY)
        taken[best] = True
        chosen.append((leg, free[best], float(distance[best])))
        if taken.all():
            break
    return chosen


def _batch(legs: list[Leg], free: list[Volunteer], now: datetime) -> list[tuple[Leg, Volunteer, float]]:
    """The production matcher over the oldest BATCH_LIMIT waiting legs."""
    by_leg = {leg.id: leg for leg in legs}
    by_vol = {v.id: v for v in free}
    matches = match_batch(legs[:BATCH_LIMIT], free, now, POLICY, k=CANDIDATES_K)
    return [(by_leg[m.leg_id], by_vol[m.volunteer_id], m.distance_m) for m in matches]


def simulate(
    policy: str, pool: list[Volunteer], arrivals: list[Arrival], *, duration_s: float, warmup_s: float
) -> Outcome:
    """Play the stream through one policy; figures cover legs arriving after the warm-up."""
    assign = _batch if policy == "batch" else _greedy
    free: dict[uuid.UUID, Volunteer] = {v.id: v for v in pool}
    busy: list[tuple[float, int, Volunteer]] = []  # (free again at, tie-breaker, volunteer there)
    busy_s = 0.0
    waiting: list[Arrival] = []  # oldest first
    pickup_m: list[float] = []
    wait_s: list[float] = []
    matcher_s = 0.0
    next_arrival = 0
    # A window can only place something new when a leg arrived, a volunteer came free, a waiting
    # leg's search radius widened, or the last window placed legs: other windows are skipped, which
    # gives the same outcome as running them (both policies are deterministic in their inputs).
    widenings: list[float] = []
    widen_steps = math.ceil((POLICY.widen_max - 1.0) / POLICY.widen_factor)
    changed = False
    ticks = int(duration_s / WINDOW_S)
    for tick in range(1, ticks + 1):
        t = tick * WINDOW_S
        while busy and busy[0][0] <= t:
            _, _, v = heapq.heappop(busy)
            free[v.id] = v
            changed = True
        while next_arrival < len(arrivals) and arrivals[next_arrival].at_s <= t:
            arrival = arrivals[next_arrival]
            waiting.append(arrival)
            for step in range(1, widen_steps + 1):
                heapq.heappush(widenings, arrival.at_s + step * POLICY.widen_step_s)
            next_arrival += 1
            changed = True
        while widenings and widenings[0] <= t:
            heapq.heappop(widenings)
            changed = True
        if not changed or not waiting or not free:
            continue
        changed = False
        now = EPOCH + timedelta(seconds=t)
        legs = [dataclasses.replace(a.leg, waiting_s=t - a.at_s) for a in waiting]
        volunteers = [dataclasses.replace(v, location_at=now) for v in free.values()]
        started = time.perf_counter()
        chosen = assign(legs, volunteers, now)
        matcher_s += time.perf_counter() - started
        placed: set[uuid.UUID] = set()
        by_leg = {a.leg.id: a for a in waiting}
        for leg, v, distance in chosen:
            arrival = by_leg[leg.id]
            placed.add(leg.id)
            del free[v.id]
            service = (
                travel_time_s(distance, v.vehicle)
                + travel_time_s(haversine_m(leg.pickup_lat, leg.pickup_lon, *arrival.dropoff), v.vehicle)
                + HANDLING_S
            )
            done_at = t + service
            busy_s += max(0.0, min(done_at, duration_s) - max(t, warmup_s))
            there = dataclasses.replace(
                v, lat=arrival.dropoff[0], lon=arrival.dropoff[1], legs_done_today=v.legs_done_today + 1
            )
            heapq.heappush(busy, (done_at, tick * 100_000 + len(placed), there))
            if arrival.at_s >= warmup_s:
                pickup_m.append(distance)
                wait_s.append(t - arrival.at_s)
        if placed:
            changed = True
            waiting = [a for a in waiting if a.leg.id not in placed]
    # Busy time already counted includes services running past the end only up to the end.
    unassigned = [a for a in waiting if a.at_s >= warmup_s]
    wait_s.extend(duration_s - a.at_s for a in unassigned)
    utilisation = busy_s / (len(pool) * (duration_s - warmup_s))
    return Outcome(pickup_m, wait_s, len(unassigned), utilisation, matcher_s)


def simulate_routes(
    pool: list[Volunteer], arrivals: list[Arrival], *, duration_s: float, warmup_s: float, max_legs: int
) -> Outcome:
    """The same stream through the route matcher: each volunteer may carry up to `max_legs` legs.

    Played by `bench.routes.simulate` (volunteers move continuously between stops; a route under
    way may grow by insertion), with the stream's handling time split between pickup and door, the
    same window, and no deadlines. Pickup distance: from where the volunteer is when the leg is
    given to its pickup, straight line, as for the other policies.
    """
    riders = [
        routes.Rider(
            i,
            v.vehicle,
            (v.lat or 0.0, v.lon or 0.0),
            0.0,
            math.inf,
            v.capacity_kg,
            languages=v.languages,
            shift_clock=False,
        )
        for i, v in enumerate(pool)
    ]
    legs = [
        routes.Delivery(
            i,
            (a.leg.pickup_lat, a.leg.pickup_lon),
            a.dropoff,
            a.at_s,
            math.inf,
            a.leg.weight_kg,
            priority=a.leg.priority,
            vehicle=a.leg.vehicle,
            languages=a.leg.languages,
            vulnerable=a.leg.vulnerable,
        )
        for i, a in enumerate(arrivals)
    ]
    outcome = routes.simulate(
        legs,
        riders,
        routes.route_round(max_legs),
        round_s=WINDOW_S,
        end_s=duration_s,
        service_s=HANDLING_S / 2,
    )
    pickup_m: list[float] = []
    wait_s: list[float] = []
    unassigned = 0
    for leg in legs:
        if leg.ready_s < warmup_s:
            continue
        given = outcome.assigned_s.get(leg.id)
        if given is None:
            unassigned += 1
            wait_s.append(duration_s - leg.ready_s)
            continue
        pickup_m.append(outcome.pickup_m[leg.id])
        wait_s.append(given - leg.ready_s)
    return Outcome(pickup_m, wait_s, unassigned, math.nan, outcome.matcher_s)


def _calibrate(
    target: float,
    pool: list[Volunteer],
    *,
    duration_s: float,
    warmup_s: float,
    seed: int,
    below: tuple[float, float] | None = None,
) -> tuple[float, Outcome]:
    """The arrival rate at which greedy runs at `target` utilisation, and greedy's outcome at it.

    Utilisation grows with the rate: proportional steps until the target is bracketed (from
    `below`, a (rate, utilisation) under the target, when one is known), then secant steps inside
    the bracket; the closest rate tried wins. Towards saturation utilisation flattens, so from
    above a step is at least a quarter of the rate, and when one end of the bracket is kept
    twice its distance from the target counts half (the Illinois rule): a step from the
    saturated side otherwise barely moves.
    """
    # (rate, utilisation - target) at each end of the bracket, as far as known
    low = (below[0], below[1] - target) if below is not None and below[1] < target else None
    high: tuple[float, float] | None = None
    # A first guess: in proportion from below, or for service times of about 1,000 s.
    rate = target * len(pool) / 1_000.0 if low is None else low[0] * target / (low[1] + target)
    last_over: bool | None = None  # whether the last run was over the target
    best: tuple[float, float, Outcome] | None = None
    for _ in range(10):
        outcome = simulate(
            "greedy",
            pool,
            make_arrivals(rate, duration_s, seed=seed),
            duration_s=duration_s,
            warmup_s=warmup_s,
        )
        off = outcome.utilisation - target
        if best is None or abs(off) < best[0]:
            best = (abs(off), rate, outcome)
        if abs(off) <= 0.01:
            break
        over = off > 0
        if over:
            high = (rate, off)
        else:
            low = (rate, off)
        if low and high:
            if over == last_over:  # the other end kept twice: it counts half
                if over:
                    low = (low[0], low[1] / 2)
                else:
                    high = (high[0], high[1] / 2)
            (r1, f1), (r2, f2) = low, high
            rate = r1 - f1 * (r2 - r1) / (f2 - f1)
        elif high is None:
            rate *= min(2.0, target / max(outcome.utilisation, 1e-3))
        else:  # over the target, nothing under it yet: saturated, the run says little of how far
            rate *= max(0.5, min(0.75, target / outcome.utilisation))
        last_over = over
    assert best is not None
    return best[1], best[2]


def _summary(outcome: Outcome) -> dict[str, Any]:
    waits = sorted(outcome.wait_s)
    return {
        "legs_measured": len(outcome.wait_s),
        "unassigned_at_end": outcome.unassigned,
        "utilisation": round(outcome.utilisation, 4) if not math.isnan(outcome.utilisation) else None,
        "mean_pickup_m": round(statistics.fmean(outcome.pickup_m), 1) if outcome.pickup_m else None,
        "mean_wait_s": round(statistics.fmean(waits), 2) if waits else None,
        "p95_wait_s": round(waits[int(0.95 * (len(waits) - 1))], 2) if waits else None,
        "max_wait_s": round(waits[-1], 2) if waits else None,
        "matcher_cpu_s": round(outcome.matcher_s, 2),
    }


def measure(
    *, volunteers: int = 200, duration_s: float = 4 * 3600, warmup_s: float = 3600, seed: int = 7
) -> dict[str, Any]:
    """Both load points: figures per policy, the ratios batch/greedy, and whether targets are met."""
    pool = make_pool(volunteers, seed=seed)
    results: dict[str, Any] = {
        "model": {
            "volunteers": volunteers,
            "simulated_s": duration_s,
            "warmup_s": warmup_s,
            "window_s": WINDOW_S,
            "handling_s": HANDLING_S,
            "seed": seed,
            "calibrated_on": "greedy utilisation",
        }
    }
    # The simulations are independent once each load point's rate is found: they run on worker
    # processes, one per core, as they become possible (their figures do not depend on the
    # machine's speed; the route matcher's wall-clock budgets see a core each). Each load point's
    # search starts from the one below it, which brackets it from below. Spawned, not forked: by
    # now `make bench` has run event loops and threads in this process.
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")) as workers:
        runs: dict[str, tuple[float, int, Outcome, Future[Outcome], Future[Outcome] | None]] = {}
        found: tuple[float, float] | None = None
        for label, target in LOAD_POINTS.items():
            rate, greedy = workers.submit(
                _calibrate, target, pool, duration_s=duration_s, warmup_s=warmup_s, seed=seed + 1, below=found
            ).result()
            found = (rate, greedy.utilisation)
            arrivals = make_arrivals(rate, duration_s, seed=seed + 1)
            batch = workers.submit(
                simulate, "batch", pool, arrivals, duration_s=duration_s, warmup_s=warmup_s
            )
            # Near saturation, volunteers who may carry several legs (the product's default limit).
            with_routes = (
                workers.submit(
                    simulate_routes,
                    pool,
                    arrivals,
                    duration_s=duration_s,
                    warmup_s=warmup_s,
                    max_legs=ROUTE_MAX_LEGS,
                )
                if label == "95"
                else None
            )
            runs[label] = (rate, len(arrivals), greedy, batch, with_routes)
        for label, (rate, count, greedy, batch, with_routes) in runs.items():
            results[f"util_{label}"] = _load_point(
                label,
                LOAD_POINTS[label],
                rate,
                count,
                greedy,
                batch.result(),
                None if with_routes is None else with_routes.result(),
            )
    return results


def _load_point(
    label: str,
    target: float,
    rate: float,
    arrivals: int,
    greedy: Outcome,
    batch: Outcome,
    with_routes: Outcome | None,
) -> dict[str, Any]:
    """One load point's figures per policy, the ratios to greedy's, and whether the targets are met."""
    g, b = _summary(greedy), _summary(batch)
    point: dict[str, Any] = {
        "target_utilisation": target,
        "arrivals_per_s": round(rate, 4),
        "arrivals": arrivals,
        "greedy": g,
        "batch": b,
        "distance_ratio": round(b["mean_pickup_m"] / g["mean_pickup_m"], 4),
        "wait_ratio": round(b["mean_wait_s"] / max(g["mean_wait_s"], 1e-9), 4),
    }
    goals = TARGETS[label]
    point["targets"] = goals
    point["met"] = point["distance_ratio"] <= goals["distance"] and (
        "wait" not in goals or point["wait_ratio"] <= goals["wait"]
    )
    if with_routes is not None:
        r = _summary(with_routes)
        r["max_active_legs"] = ROUTE_MAX_LEGS
        point["routes"] = r
        point["routes_distance_ratio"] = round(r["mean_pickup_m"] / g["mean_pickup_m"], 4)
        point["routes_wait_ratio"] = round(r["mean_wait_s"] / max(g["mean_wait_s"], 1e-9), 4)
        point["routes_met"] = (
            point["routes_distance_ratio"] <= goals["distance"]
            and point["routes_wait_ratio"] <= goals["wait"]
        )
    return point


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--volunteers", type=int, default=200)
    parser.add_argument("--hours", type=float, default=4.0, help="simulated hours, the first quarter warm-up")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="300 volunteers, 2 simulated hours")
    args = parser.parse_args()
    volunteers, hours = (300, 2.0) if args.quick else (args.volunteers, args.hours)
    print(
        json.dumps(
            measure(volunteers=volunteers, duration_s=hours * 3600, warmup_s=hours * 900, seed=args.seed),
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
