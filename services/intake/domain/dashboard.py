"""What the ops dashboard shows: Ningbo's districts, a map frame to draw them in, readable durations.

No IO here: the service layer reads the numbers, this module decides how they are placed and worded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

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


# --- what GET /ops/snapshot and every event of GET /ops/stream carry ----------------------------------


class DistrictOut(BaseModel):
    name: str
    name_zh: str
    x: float
    y: float
    radius: float = Field(description="The district's rough extent, in drawing units.")


class MapOut(BaseModel):
    width: float
    height: float
    units_per_km: float
    districts: list[DistrictOut]


class VolunteerPointOut(BaseModel):
    id: str
    x: float
    y: float
    lat: float
    lon: float
    vehicle: str | None
    name_masked: str | None
    location_at: datetime
    stale: bool = Field(description="No location reported for a while: drawn faded.")


class VolunteersOut(BaseModel):
    on_duty: int
    located: int = Field(description="On duty with a known location inside the map.")
    outside_map: int
    points: list[VolunteerPointOut]


class EscalatedTaskOut(BaseModel):
    id: str
    kind: str
    priority: str
    created_at: datetime
    escalated_at: datetime | None
    legs_waiting: int


class WaitingLegOut(BaseModel):
    id: str
    task_id: str
    index: int
    status: str
    kind: str
    priority: str
    waiting_since: datetime = Field(description="When the task was submitted.")
    status_since: datetime | None = Field(description="When the leg entered its current status.")


class TimingOut(BaseModel):
    name: str
    label: str
    legs: int = Field(description="Legs that completed this timing inside the window.")
    p50_s: float | None
    p90_s: float | None
    p50: str
    p90: str


class OpsSnapshotOut(BaseModel):
    generated_at: datetime
    tasks_total: int
    tasks_by_status: dict[str, int]
    escalated_total: int
    escalated: list[EscalatedTaskOut]
    waiting_total: int
    waiting: list[WaitingLegOut]
    volunteers: VolunteersOut
    timings_window_s: int
    timings: list[TimingOut]
    map: MapOut
