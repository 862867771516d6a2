"""Distances and travel times on the ground: one definition for dispatch, the dashboard and the simulation."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_000.0
KM_PER_DEGREE_LAT = 111.32
# Streets are longer than the straight line between two points; in a city by about this much.
STREET_DETOUR = 1.3
# Typical urban speeds in metres per second.
SPEED_M_S: dict[str, float] = {"foot": 1.3, "bicycle": 4.0, "ebike": 5.5, "car": 8.0, "van": 7.0}


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def travel_time_s(distance_m: float, vehicle: str) -> float:
    """Estimated time to cover a straight-line distance by `vehicle`, streets' detour included."""
    return distance_m * STREET_DETOUR / SPEED_M_S[vehicle]
