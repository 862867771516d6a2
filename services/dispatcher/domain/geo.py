"""Distances and travel times on the ground, by vehicle."""

from __future__ import annotations

from shared.geo import EARTH_RADIUS_M, SPEED_M_S, haversine_m, travel_time_s

__all__ = [
    "EARTH_RADIUS_M",
    "SEARCH_RADIUS_M",
    "SPEED_M_S",
    "VEHICLE_ORDER",
    "haversine_m",
    "travel_time_s",
    "vehicle_satisfies",
]

# How far away a volunteer may be asked to come from, by vehicle.
SEARCH_RADIUS_M = {"foot": 2_000.0, "bicycle": 5_000.0, "ebike": 8_000.0, "car": 20_000.0, "van": 25_000.0}
# From the least to the most a vehicle can do: which vehicles satisfy a need.
VEHICLE_ORDER = ("foot", "bicycle", "ebike", "car", "van")


def vehicle_satisfies(offered: str, required: str | None) -> bool:
    """A van does what a bicycle does; a bicycle does not do what a van does."""
    if required is None:
        return True
    return VEHICLE_ORDER.index(offered) >= VEHICLE_ORDER.index(required)
