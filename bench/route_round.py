"""The matcher round's cost with routes on, against the same round one leg at a time (same snapshots).

The latency benchmark (`bench.dispatch_latency`) runs the whole system and is only as quiet as
the machine; this one isolates the part routes add: `match_batch(..., plan=True)` against
`match_batch(...)` on the same legs, pool and candidate pairs, in one process. Snapshots as in the
latency benchmark's steady state: `volunteers` on duty around Ningbo's district centres
(`max_active_legs` 3), one window's legs (200 tasks/s x 500 ms = 100), each with a drop-off
about 2 km away. A share of the volunteers (`carrying`) already hold an accepted route of one or
two legs, so insertion is tried too. The pool and the candidate pairs are built outside the timed
part (the matcher builds the pool ahead of the round, and both variants share the pairs).

Figures: per-round wall time (p50 / p95 / max over the snapshots, each the fastest of `repeats`
runs, which sees past a busy machine) of each variant and their ratio, and where the routed
rounds spend it (cProfile, cumulative, the matcher's and the router's own functions; the
profiler slows Python code down unevenly, so read it for where, not for how much).

Run: `.venv/bin/python -m bench.route_round [--rounds 20] [--volunteers 20000] [--carrying 0.3]`.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import json
import math
import pstats
import statistics
import time
import uuid
from typing import Any

import numpy as np

from bench.dispatch_quality import CANDIDATES_K, NOW, POLICY, make_snapshot
from services.dispatcher.domain import matching
from services.dispatcher.domain.eligibility import Leg, Volunteer
from services.dispatcher.domain.matching import (
    AcceptedRoute,
    Match,
    Pool,
    candidate_pairs,
    match_batch,
    route_leg,
)

LEGS_PER_ROUND = 100
PROFILED_ROUNDS = 3
DROPOFF_SPREAD_KM = 1.5


def _with_dropoff(leg: Leg, rng: np.random.Generator, *, due_s: float = math.inf) -> Leg:
    north_km, east_km = rng.normal(0.0, DROPOFF_SPREAD_KM, size=2)
    return dataclasses.replace(
        leg,
        dropoff_lat=leg.pickup_lat + north_km / 111.0,
        dropoff_lon=leg.pickup_lon + east_km / (111.0 * math.cos(math.radians(leg.pickup_lat))),
        due_s=due_s,
    )


def make_round(
    *, volunteers: int, carrying: float, seed: int
) -> tuple[list[Leg], list[Volunteer], dict[uuid.UUID, AcceptedRoute]]:
    """One round's legs, the volunteers on duty, and the accepted routes of those carrying one."""
    rng = np.random.default_rng(seed)
    snapshot = make_snapshot(volunteers, 1, seed=seed)  # `volunteers` legs to draw from, as many volunteers
    now_s = NOW.timestamp()
    # Deadlines an hour or two away for a third of the legs, none for the rest.
    legs = [
        _with_dropoff(
            leg, rng, due_s=now_s + float(rng.uniform(3600, 7200)) if rng.random() < 0.33 else math.inf
        )
        for leg in snapshot.legs[:LEGS_PER_ROUND]
    ]
    held = [_with_dropoff(leg, rng) for leg in snapshot.legs[LEGS_PER_ROUND:]]
    people: list[Volunteer] = []
    routes: dict[uuid.UUID, AcceptedRoute] = {}
    for i, v in enumerate(snapshot.volunteers):
        v = dataclasses.replace(v, max_active_legs=3)
        if rng.random() < carrying and i < len(held) - 1:
            # One or two legs near them: the first picked up already (only its drop-off left).
            mine = [route_leg(held[i])] + ([route_leg(held[i + 1])] if rng.random() < 0.5 else [])
            stops = (mine[0].dropoff, *(s for rl in mine[1:] for s in (rl.pickup, rl.dropoff)))
            v = dataclasses.replace(v, active_legs=len(mine))
            routes[v.id] = AcceptedRoute(uuid.UUID(int=i), stops)
        people.append(v)
    return legs, people, routes


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    *, rounds: int = 20, volunteers: int = 20_000, carrying: float = 0.3, seed: int = 40, repeats: int = 3
) -> dict[str, Any]:
    single: list[Match] = []
    routed: list[Match] = []
    one_leg_ms: list[float] = []
    routed_ms: list[float] = []
    routed_offers: list[int] = []
    one_leg_offers: list[int] = []
    multi_leg_routes: list[int] = []
    inserted: list[int] = []
    pairs_ms: list[float] = []
    profile = cProfile.Profile()
    for r in range(rounds):
        legs, people, accepted = make_round(volunteers=volunteers, carrying=carrying, seed=seed + r)
        pool = Pool(people, NOW, POLICY)
        started = time.perf_counter()
        pairs = candidate_pairs(legs, pool, NOW, POLICY, k=CANDIDATES_K)
        pairs_ms.append((time.perf_counter() - started) * 1000)
        fastest = {False: math.inf, True: math.inf}
        for plan in (False, True) * repeats:
            gc.collect()
            started = time.perf_counter()
            found = match_batch(
                legs, pool, NOW, POLICY, k=CANDIDATES_K, pairs=dict(pairs), plan=plan, routes=accepted
            )
            fastest[plan] = min(fastest[plan], (time.perf_counter() - started) * 1000)
            single, routed = (single, found) if plan else (found, routed)
        one_leg_ms.append(fastest[False])
        routed_ms.append(fastest[True])
        if r < PROFILED_ROUNDS:  # again under the profiler, which slows Python code down unevenly
            profile.enable()
            match_batch(
                legs, pool, NOW, POLICY, k=CANDIDATES_K, pairs=dict(pairs), plan=True, routes=accepted
            )
            profile.disable()
        one_leg_offers.append(len(single))
        routed_offers.append(len(routed))
        by_volunteer: dict[uuid.UUID, int] = {}
        for m in routed:
            by_volunteer[m.volunteer_id] = by_volunteer.get(m.volunteer_id, 0) + 1
        multi_leg_routes.append(sum(1 for n in by_volunteer.values() if n >= 2))
        inserted.append(sum(1 for m in routed if m.route_id is not None))
    stats = pstats.Stats(profile)
    own = [
        (f"{func[2]} ({func[0].rsplit('/', 1)[-1]}:{func[1]})", row[3])
        for func, row in stats.stats.items()  # type: ignore[attr-defined]
        if "services/dispatcher/domain" in func[0]
    ]
    total = max(row[3] for row in stats.stats.values())  # type: ignore[attr-defined]
    top = sorted(own, key=lambda item: -item[1])[:12]
    results: dict[str, Any] = {
        "model": {
            "rounds": rounds,
            "volunteers": volunteers,
            "legs_per_round": LEGS_PER_ROUND,
            "carrying_share": carrying,
            "fastest_of": repeats,
            "routing_budget_ms": 1000 * matching.ROUTING_BUDGET_S,
        },
        "candidate_pairs_ms": _figures(pairs_ms),
        "one_leg_ms": _figures(one_leg_ms),
        "routes_ms": _figures(routed_ms),
        "p95_ratio": round(_percentile(routed_ms, 0.95) / max(_percentile(one_leg_ms, 0.95), 1e-9), 2),
        "offers_per_round": {
            "one_leg": statistics.fmean(one_leg_offers),
            "routes": statistics.fmean(routed_offers),
            "new_routes_of_several_legs": statistics.fmean(multi_leg_routes),
            "legs_inserted_into_accepted_routes": statistics.fmean(inserted),
        },
        "routes_time_by_function": [(name, round(seconds / total, 3)) for name, seconds in top],
    }
    return results


def _figures(ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(_percentile(ms, 0.5), 2),
        "p95": round(_percentile(ms, 0.95), 2),
        "max": round(max(ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--volunteers", type=int, default=20_000)
    parser.add_argument("--carrying", type=float, default=0.3)
    args = parser.parse_args()
    print(
        json.dumps(measure(rounds=args.rounds, volunteers=args.volunteers, carrying=args.carrying), indent=2)
    )


if __name__ == "__main__":
    main()
