"""The CSV export of tasks and legs: one row per leg, the task's columns repeated, no personal data.

Only what describes the work is exported: ids, kind, priority, statuses, times, the district of the
drop-off (its nearest Ningbo district centre), the pickup to drop-off distance, and the volunteer
(the name as the read model keeps it, masked, for the organisation's operators; the id for ops and
admin). Names, phones, emails, addresses and notes of the people served never appear.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.geo import haversine_m
from shared.ningbo import DISTRICTS

COLUMNS: tuple[str, ...] = (
    "task_id",
    "organisation_id",
    "kind",
    "priority",
    "task_status",
    "created_at",
    "leg_id",
    "leg_index",
    "leg_status",
    "district",
    "distance_km",
    "offered_at",
    "assigned_at",
    "picked_up_at",
    "delivered_at",
    "confirmed_at",
    "volunteer",
)
# The leg's times, by the status whose transition records them.
LEG_TIMES: tuple[str, ...] = ("offered", "assigned", "picked_up", "delivered", "confirmed")
# A spreadsheet reads a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportLeg:
    """One leg with its task, as the repository reads it (the request reduced to coordinates)."""

    task_id: uuid.UUID
    organisation_id: uuid.UUID
    kind: str
    priority: str
    task_status: str
    created_at: datetime
    leg_id: uuid.UUID
    leg_index: int
    leg_status: str
    leg_transitions: Mapping[str, Any]
    pickup_lat: float | None
    pickup_lon: float | None
    dropoff_lat: float | None
    dropoff_lon: float | None
    volunteer_id: uuid.UUID | None
    volunteer_name: str | None


def district_of(lat: float | None, lon: float | None) -> str:
    """The Ningbo district whose centre is nearest, or "" without coordinates."""
    if lat is None or lon is None:
        return ""
    return min(DISTRICTS, key=lambda d: haversine_m(lat, lon, d.lat, d.lon)).name


def distance_km(leg: ExportLeg) -> str:
    """Pickup to drop-off as the crow flies, in km with two decimals; "" when a point is unknown."""
    points = (leg.pickup_lat, leg.pickup_lon, leg.dropoff_lat, leg.dropoff_lon)
    if any(p is None for p in points):
        return ""
    lat1, lon1, lat2, lon2 = (float(p) for p in points)  # type: ignore[arg-type]
    return f"{haversine_m(lat1, lon1, lat2, lon2) / 1000:.2f}"


def safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula: those starting with = + - @ get a leading '."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def row(leg: ExportLeg, *, volunteer_names: bool) -> list[str]:
    """The CSV cells of one leg; `volunteer_names`: the masked name (operators), else the id."""
    if volunteer_names:
        volunteer = leg.volunteer_name or ("" if leg.volunteer_id is None else "(unnamed)")
    else:
        volunteer = "" if leg.volunteer_id is None else str(leg.volunteer_id)
    times = [str(leg.leg_transitions.get(status) or "") for status in LEG_TIMES]
    cells = [
        str(leg.task_id),
        str(leg.organisation_id),
        leg.kind,
        leg.priority,
        leg.task_status,
        leg.created_at.isoformat(),
        str(leg.leg_id),
        str(leg.leg_index),
        leg.leg_status,
        district_of(leg.dropoff_lat, leg.dropoff_lon),
        distance_km(leg),
        *times,
        volunteer,
    ]
    return [safe_cell(cell) for cell in cells]


def csv_line(cells: Iterable[str]) -> str:
    """One CSV line (RFC 4180 quoting, CRLF line end)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


HEADER = csv_line(COLUMNS)
