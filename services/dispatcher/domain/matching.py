"""Batch matching: candidates from a spatial index, then an optimal assignment over them."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from services.dispatcher.domain.eligibility import Leg, Policy, Volunteer, is_eligible
from services.dispatcher.domain.geo import EARTH_RADIUS_M, haversine_m, travel_time_s

# Seconds of pickup time a priority is worth: a critical leg beats an urgent one even if its
# volunteer is an hour further away. Vulnerable recipients come first among equals.
PRIORITY_BONUS_S = {"critical": 7_200.0, "urgent": 3_600.0, "routine": 0.0}
VULNERABLE_BONUS_S = 600.0
# Each leg already done today makes a volunteer look 5 % further away: work is spread out.
FAIRNESS_PER_LEG = 0.05
_INFEASIBLE = 1e12


@dataclass(frozen=True)
class Match:
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    distance_m: float
    cost: float


def pair_cost(v: Volunteer, leg: Leg) -> tuple[float, float]:
    """(cost, distance in metres) of sending `v` to pick up `leg`; lower is better."""
    assert v.lat is not None and v.lon is not None
    distance = haversine_m(v.lat, v.lon, leg.pickup_lat, leg.pickup_lon)
    eta = travel_time_s(distance, v.vehicle) * (1.0 + FAIRNESS_PER_LEG * v.legs_done_today)
    bonus = PRIORITY_BONUS_S.get(leg.priority, 0.0) + (VULNERABLE_BONUS_S if leg.vulnerable else 0.0)
    return eta - bonus, distance


def _xyz(lat: float, lon: float) -> tuple[float, float, float]:
    la, lo = math.radians(lat), math.radians(lon)
    return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))


def candidate_pairs(
    legs: list[Leg], volunteers: list[Volunteer], now: datetime, policy: Policy, *, k: int = 16
) -> dict[tuple[int, int], tuple[float, float]]:
    """The k nearest eligible volunteers of each leg, as {(leg index, volunteer index): (cost, distance)}."""
    located = [i for i, v in enumerate(volunteers) if v.lat is not None and v.lon is not None]
    if not legs or not located:
        return {}
    tree = cKDTree(np.array([_xyz(volunteers[i].lat, volunteers[i].lon) for i in located]))  # type: ignore[arg-type]
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    # Ask the index for more than k, since the nearest may be ineligible; widen until k are found.
    for li, leg in enumerate(legs):
        want = min(len(located), k * 4)
        found: list[int] = []
        while True:
            _, idx = tree.query(_xyz(leg.pickup_lat, leg.pickup_lon), k=want)
            idx_list = [int(idx)] if want == 1 else [int(i) for i in idx]
            found = [located[i] for i in idx_list if is_eligible(volunteers[located[i]], leg, now, policy)]
            if len(found) >= k or want >= len(located):
                break
            want = min(len(located), want * 4)
        for vi in found[:k]:
            pairs[(li, vi)] = pair_cost(volunteers[vi], leg)
    return pairs


def solve(
    legs: list[Leg], volunteers: list[Volunteer], pairs: dict[tuple[int, int], tuple[float, float]]
) -> list[Match]:
    """Minimum-cost assignment over the candidate pairs, at most one leg per volunteer per batch."""
    if not pairs:
        return []
    leg_rows = sorted({li for li, _ in pairs})
    vol_cols = sorted({vi for _, vi in pairs})
    row_of = {li: r for r, li in enumerate(leg_rows)}
    col_of = {vi: c for c, vi in enumerate(vol_cols)}
    cost = np.full((len(leg_rows), len(vol_cols)), _INFEASIBLE)
    for (li, vi), (c, _) in pairs.items():
        cost[row_of[li], col_of[vi]] = c
    rows, cols = linear_sum_assignment(cost)
    matches = []
    for r, c in zip(rows, cols, strict=True):
        if cost[r, c] >= _INFEASIBLE:
            continue
        li, vi = leg_rows[r], vol_cols[c]
        matches.append(Match(legs[li].id, volunteers[vi].id, pairs[(li, vi)][1], float(cost[r, c])))
    return matches


def match_batch(legs: list[Leg], volunteers: list[Volunteer], now: datetime, policy: Policy) -> list[Match]:
    """Which volunteer to offer each leg in this batch; legs left out wait for the next one."""
    return solve(legs, volunteers, candidate_pairs(legs, volunteers, now, policy))


__all__ = ["EARTH_RADIUS_M", "Match", "candidate_pairs", "match_batch", "pair_cost", "solve"]
