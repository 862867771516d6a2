"""Distances and travel times on the ground, by vehicle."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_000.0

# Typical urban speeds in metres per second, and how far away a volunteer may be asked to come from.
SPEED_M_S = {"foot": 1.3, "bicycle": 4.0, "ebike": 5.5, "car": 8.0, "van": 7.0}
SEARCH_RADIUS_M = {"foot": 2_000.0, "bicycle": 5_000.0, "ebike": 8_000.0, "car": 20_000.0, "van": 25_000.0}
# What each vehicle can carry at most, whatever its driver says; and which vehicles satisfy a need.
VEHICLE_ORDER = ("foot", "bicycle", "ebike", "car", "van")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def travel_time_s(distance_m: float, vehicle: str) -> float:
    """Estimated time to cover a straight-line distance, with a detour factor for streets."""
    return distance_m * 1.3 / SPEED_M_S[vehicle]


def vehicle_satisfies(offered: str, required: str | None) -> bool:
    """A van does what a bicycle does; a bicycle does not do what a van does."""
    if required is None:
        return True
    return VEHICLE_ORDER.index(offered) >= VEHICLE_ORDER.index(required)
