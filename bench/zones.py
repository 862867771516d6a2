"""Geography-partitioned dispatch: what splitting one city's batch into zones costs in match quality.

The same seeded Ningbo snapshots as `bench.dispatch_quality`, matched by the production matcher
(`services.dispatcher.domain.matching.match_batch`) in three ways:

- global:   one batch over every pending leg and every volunteer (one dispatcher replica's view);
- zoned:    each zone (a district, or a square grid cell) solved on its own, as a replica owning that
            zone would: a leg belongs to the zone of its pickup, a volunteer to the zone they stand in;
- overlap:  zoned, but a volunteer within `overlap_km` of another zone's border is visible to that
            zone too. Two zones may then pick the same volunteer in one window; the cheaper claim
            wins (in production: the first to lock the volunteer's row) and the losing leg waits for
            the next window, like any leg left unplaced.

Windows repeat, with what is still pending and who is still free, until one places nothing. The
figures: the matcher's objective without bonuses (weighted seconds to pickup, as in
`bench.dispatch_quality`) relative to global, in total (lower when fewer legs are placed, so read it
with the unplaced share) and over the same legs (those placed both globally and in zones); the
share of legs left unplaced after the first window and at the end; claims lost to a conflict; and
the slowest zone's solve time, which bounds a window when each zone has a replica of its own.

Run: `.venv/bin/python -m bench.zones`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bench.dispatch_quality import (
    CANDIDATES_K,
    NOW,
    POLICY,
    Snapshot,
    make_snapshot,
)
from services.dispatcher.domain.eligibility import Leg, Volunteer
from services.dispatcher.domain.matching import (
    PRIORITY_BONUS_S,
    VULNERABLE_BONUS_S,
    Match,
    match_batch,
    pair_cost,
)
from shared.ningbo import DISTRICTS

# A local flat projection around central Ningbo: at city scale the error is well under 1 %.
ORIGIN_LAT, ORIGIN_LON = 29.87, 121.55
KM_PER_DEG_LAT = 111.0
KM_PER_DEG_LON = 111.0 * math.cos(math.radians(ORIGIN_LAT))

# (legs, supply as a multiple of demand): seeds 101, 102, ... keep them apart from dispatch_quality's.
SNAPSHOTS: tuple[tuple[int, int], ...] = ((500, 1), (500, 3), (2000, 1), (2000, 2))
MAX_WINDOWS = 20


def to_km(lat: float, lon: float) -> tuple[float, float]:
    """(east, north) in km from the origin."""
    return (lon - ORIGIN_LON) * KM_PER_DEG_LON, (lat - ORIGIN_LAT) * KM_PER_DEG_LAT


class Zoning(Protocol):
    """How the map is cut: each point's own zone, and how far it is from the zones around it."""

    @property
    def name(self) -> str: ...

    def home(self, lat: float, lon: float) -> str: ...

    def neighbours(self, lat: float, lon: float) -> dict[str, float]:
        """Other zones near the point, with the point's distance in km to each one's border."""
        ...


@dataclass(frozen=True)
class OneZone:
    """No partitioning: everything in one zone (one replica dispatching the whole city)."""

    name: str = "global"

    def home(self, lat: float, lon: float) -> str:
        return "all"

    def neighbours(self, lat: float, lon: float) -> dict[str, float]:
        return {}


@dataclass(frozen=True)
class DistrictZones:
    """A zone per district: the Voronoi cell of its centre (a point belongs to its nearest centre)."""

    centres: tuple[tuple[str, float, float], ...] = tuple((d.name, d.lat, d.lon) for d in DISTRICTS)
    name: str = "district"

    def _distances_sq(self, lat: float, lon: float) -> list[tuple[float, str, tuple[float, float]]]:
        x, y = to_km(lat, lon)
        found = []
        for name, clat, clon in self.centres:
            cx, cy = to_km(clat, clon)
            found.append(((x - cx) ** 2 + (y - cy) ** 2, name, (cx, cy)))
        return sorted(found)

    def home(self, lat: float, lon: float) -> str:
        return self._distances_sq(lat, lon)[0][1]

    def neighbours(self, lat: float, lon: float) -> dict[str, float]:
        # Distance to the bisector between the home centre and each other centre: the border line
        # between the two cells where they touch (a lower bound where they do not).
        (own_sq, _, own), *others = self._distances_sq(lat, lon)
        result = {}
        for other_sq, name, centre in others:
            separation = math.dist(own, centre)
            result[name] = (other_sq - own_sq) / (2 * separation)
        return result


@dataclass(frozen=True)
class GridZones:
    """Square cells of `cell_km` on the local projection; a zone is named by its column and row."""

    cell_km: float

    @property
    def name(self) -> str:
        return f"grid {self.cell_km:g} km"

    def _cell(self, lat: float, lon: float) -> tuple[int, int, float, float]:
        x, y = to_km(lat, lon)
        return math.floor(x / self.cell_km), math.floor(y / self.cell_km), x, y

    def home(self, lat: float, lon: float) -> str:
        column, row, _, _ = self._cell(lat, lon)
        return f"{column},{row}"

    def neighbours(self, lat: float, lon: float) -> dict[str, float]:
        """The eight cells around the point's own (overlaps wider than a cell are not modelled)."""
        column, row, x, y = self._cell(lat, lon)
        result = {}
        for dc in (-1, 0, 1):
            for dr in (-1, 0, 1):
                if dc == dr == 0:
                    continue
                left, bottom = (column + dc) * self.cell_km, (row + dr) * self.cell_km
                dx = max(0.0, left - x, x - (left + self.cell_km))
                dy = max(0.0, bottom - y, y - (bottom + self.cell_km))
                result[f"{column + dc},{row + dr}"] = math.hypot(dx, dy)
        return result


def visible_zones(zoning: Zoning, lat: float, lon: float, overlap_km: float) -> frozenset[str]:
    """The zones that see a volunteer here: their own, and any whose border is within `overlap_km`."""
    near = {zone for zone, distance in zoning.neighbours(lat, lon).items() if distance <= overlap_km}
    return frozenset({zoning.home(lat, lon), *near})


@dataclass
class Zone:
    legs: list[Leg]
    volunteers: list[Volunteer]


def partition(
    legs: Iterable[Leg], volunteers: Iterable[Volunteer], zoning: Zoning, *, overlap_km: float = 0.0
) -> dict[str, Zone]:
    """Each leg to the zone of its pickup; each volunteer to every zone that can see them."""
    zones: dict[str, Zone] = {}
    for leg in legs:
        zones.setdefault(zoning.home(leg.pickup_lat, leg.pickup_lon), Zone([], [])).legs.append(leg)
    for volunteer in volunteers:
        assert volunteer.lat is not None and volunteer.lon is not None
        for zone in visible_zones(zoning, volunteer.lat, volunteer.lon, overlap_km):
            zones.setdefault(zone, Zone([], [])).volunteers.append(volunteer)
    return zones


def resolve_conflicts(claims: Iterable[Match]) -> tuple[list[Match], int]:
    """At most one leg per volunteer: the cheapest claim on each wins. (winners, claims lost)."""
    winners: dict[uuid.UUID, Match] = {}
    lost = 0
    for claim in sorted(claims, key=lambda m: (m.cost, m.leg_id)):
        if claim.volunteer_id in winners:
            lost += 1
        else:
            winners[claim.volunteer_id] = claim
    return list(winners.values()), lost


@dataclass
class Outcome:
    assignment: dict[uuid.UUID, uuid.UUID]
    first_window_placed: int
    conflicts: int
    windows: int
    zones: int
    slowest_zone_ms: float


def _match_zones(
    legs: list[Leg], free: list[Volunteer], zoning: Zoning, overlap_km: float
) -> tuple[list[Match], int, int, float]:
    """One phase of a window, every zone solved on its own: (winners, claims lost, zones, slowest ms)."""
    zones = partition(legs, free, zoning, overlap_km=overlap_km)
    claims: list[Match] = []
    slowest_ms = 0.0
    for zone in zones.values():
        started = time.perf_counter()
        claims += match_batch(zone.legs, zone.volunteers, NOW, POLICY, k=CANDIDATES_K)
        slowest_ms = max(slowest_ms, 1000 * (time.perf_counter() - started))
    winners, lost = resolve_conflicts(claims)
    return winners, lost, len(zones), slowest_ms


def zoned_assignment(
    snapshot: Snapshot, zoning: Zoning, *, overlap_km: float = 0.0, home_first: bool = False
) -> Outcome:
    """Window after window, each zone matched on its own, conflicts on shared volunteers resolved.

    With `home_first`, each window has two phases: every zone first matches with only the
    volunteers standing in it (no conflicts possible); then legs still unplaced see the border
    volunteers of neighbouring zones that are still free, and only those claims can conflict.
    """
    pending = list(snapshot.legs)
    free = list(snapshot.volunteers)
    assignment: dict[uuid.UUID, uuid.UUID] = {}
    first_window_placed = conflicts = windows = 0
    zone_count, slowest_ms = 0, 0.0
    phases = (0.0, overlap_km) if home_first else (overlap_km,)
    while pending and windows < MAX_WINDOWS:
        placed_this_window = 0
        for phase_overlap in phases:
            winners, lost, zones, phase_ms = _match_zones(pending, free, zoning, phase_overlap)
            zone_count, slowest_ms = max(zone_count, zones), max(slowest_ms, phase_ms)
            conflicts += lost
            placed_this_window += len(winners)
            assignment.update({m.leg_id: m.volunteer_id for m in winners})
            taken = {m.volunteer_id for m in winners}
            free = [v for v in free if v.id not in taken]
            pending = [leg for leg in pending if leg.id not in assignment]
        windows += 1
        if windows == 1:
            first_window_placed = placed_this_window
        if not placed_this_window:
            break
    return Outcome(assignment, first_window_placed, conflicts, windows, zone_count, slowest_ms)


def pickup_s_by_leg(snapshot: Snapshot, assignment: dict[uuid.UUID, uuid.UUID]) -> dict[uuid.UUID, float]:
    """Each placed leg's weighted seconds to pickup: the matcher's cost without the bonuses."""
    legs = {leg.id: leg for leg in snapshot.legs}
    volunteers = {v.id: v for v in snapshot.volunteers}
    found = {}
    for leg_id, volunteer_id in assignment.items():
        leg = legs[leg_id]
        bonus = PRIORITY_BONUS_S.get(leg.priority, 0.0) + (VULNERABLE_BONUS_S if leg.vulnerable else 0.0)
        found[leg_id] = pair_cost(volunteers[volunteer_id], leg)[0] + bonus
    return found


# (zoning, overlap in km, home first): the first is the global baseline.
SCHEMES: tuple[tuple[Zoning, float, bool], ...] = (
    (OneZone(), 0.0, False),
    (DistrictZones(), 0.0, False),
    (DistrictZones(), 2.0, False),
    (DistrictZones(), 2.0, True),
    (DistrictZones(), 5.0, True),
    (GridZones(10.0), 0.0, False),
    (GridZones(10.0), 2.0, False),
    (GridZones(10.0), 2.0, True),
    (GridZones(10.0), 5.0, True),
    (GridZones(5.0), 0.0, False),
    (GridZones(5.0), 2.0, False),
    (GridZones(5.0), 2.0, True),
)


def run(snapshots: tuple[tuple[int, int], ...] = SNAPSHOTS) -> dict[str, dict[str, Any]]:
    """Every scheme on every snapshot; print a table; return the figures by snapshot and scheme."""
    results: dict[str, dict[str, Any]] = {}
    header = (
        f"{'snapshot':<10}{'scheme':<16}{'overlap':>8}{'home 1st':>9}{'zones':>6}{'placed':>8}"
        f"{'unplaced 1st':>13}"
        f"{'unplaced':>9}{'conflicts':>10}{'cost/global':>12}{'same legs':>10}{'slowest zone ms':>16}"
    )
    print(header)
    print("-" * len(header))
    for seed, (legs, supply) in enumerate(snapshots, start=101):
        snapshot = make_snapshot(legs, supply, seed=seed)
        name = f"{legs}x{supply}"
        results[name] = {}
        baseline: dict[uuid.UUID, float] | None = None
        for zoning, overlap_km, home_first in SCHEMES:
            outcome = zoned_assignment(snapshot, zoning, overlap_km=overlap_km, home_first=home_first)
            placed = len(outcome.assignment)
            by_leg = pickup_s_by_leg(snapshot, outcome.assignment)
            if baseline is None:
                baseline = by_leg
            pickup_s, global_s = sum(by_leg.values()), sum(baseline.values())
            total_ratio = pickup_s / global_s if global_s else 1.0
            # The fair comparison: the same legs, placed both globally and in zones.
            both = by_leg.keys() & baseline.keys()
            same_legs_ratio = sum(by_leg[leg] for leg in both) / (sum(baseline[leg] for leg in both) or 1.0)
            figures = {
                "zones": outcome.zones,
                "overlap_km": overlap_km,
                "home_first": home_first,
                "placed": placed,
                "unplaced_first_window_share": round(1 - outcome.first_window_placed / legs, 4),
                "unplaced_share": round(1 - placed / legs, 4),
                "conflicts": outcome.conflicts,
                "windows": outcome.windows,
                "pickup_s": round(pickup_s, 1),
                "cost_ratio": round(total_ratio, 4),
                "same_legs_cost_ratio": round(same_legs_ratio, 4),
                "slowest_zone_ms": round(outcome.slowest_zone_ms, 1),
            }
            scheme = zoning.name if zoning.name == "global" else f"{zoning.name} +{overlap_km:g} km"
            scheme += " home first" if home_first else ""
            results[name][scheme] = figures
            print(
                f"{name:<10}{zoning.name:<16}{overlap_km:>6g}km{'yes' if home_first else '':>9}"
                f"{outcome.zones:>6}{placed:>8}"
                f"{figures['unplaced_first_window_share']:>12.1%} {figures['unplaced_share']:>8.1%}"
                f"{outcome.conflicts:>10}{total_ratio:>12.3f}{same_legs_ratio:>10.3f}"
                f"{outcome.slowest_zone_ms:>16.0f}"
            )
    return results


if __name__ == "__main__":
    run()
