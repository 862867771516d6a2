"""What the ops dashboard shows: Ningbo's districts, a map frame to draw them in, readable durations.

No IO here: the service layer reads the numbers, this module decides how they are placed and worded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from shared.geo import KM_PER_DEGREE_LAT
from shared.ningbo import DISTRICTS


@dataclass(frozen=True)
class MapFrame:
    """An equirectangular map of a small area: x grows east, y grows south, in drawing units.

    Over a city the error of a flat projection is far below what a dashboard can show, and one
    east-west scale factor (the cosine of the middle latitude) keeps distances true in both axes.
    """

    south: float
    north: float
    west: float
    east: float
    width: float

    @classmethod
    def around(
        cls, places: Iterable[tuple[float, float]], *, margin_km: float = 25.0, width: float = 600.0
    ) -> MapFrame:
        """The smallest frame holding every (lat, lon) in `places`, with `margin_km` on each side."""
        lats, lons = zip(*places, strict=True)
        mid_lat = (min(lats) + max(lats)) / 2
        margin_lat = margin_km / KM_PER_DEGREE_LAT
        margin_lon = margin_km / (KM_PER_DEGREE_LAT * math.cos(math.radians(mid_lat)))
        return cls(
            south=min(lats) - margin_lat,
            north=max(lats) + margin_lat,
            west=min(lons) - margin_lon,
            east=max(lons) + margin_lon,
            width=width,
        )

    @property
    def _x_scale(self) -> float:
        return self.width / (self.east - self.west)

    @property
    def _y_scale(self) -> float:
        mid_lat = (self.south + self.north) / 2
        return self._x_scale / math.cos(math.radians(mid_lat))

    @property
    def height(self) -> float:
        return (self.north - self.south) * self._y_scale

    @property
    def units_per_km(self) -> float:
        return self._y_scale / KM_PER_DEGREE_LAT

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east

    def project(self, lat: float, lon: float) -> tuple[float, float] | None:
        """Where (lat, lon) is drawn, or None when it lies outside the frame."""
        if not self.contains(lat, lon):
            return None
        x = (lon - self.west) * self._x_scale
        y = (self.north - lat) * self._y_scale
        return round(x, 1), round(y, 1)


NINGBO = MapFrame.around((d.lat, d.lon) for d in DISTRICTS)


def format_duration(seconds: float | None) -> str:
    """A duration as an operator reads it at a glance: "850 ms", "4.2 s", "3 min 05 s", "1 h 02 min"."""
    if seconds is None or math.isnan(seconds):
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
