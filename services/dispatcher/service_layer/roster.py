"""The matcher's roster: the volunteers on duty, kept in memory between rounds.

Reading every volunteer on duty each round cost most of a round's time with 20,000 on duty. The
roster reads them all once, then each round only the rows changed since its previous read: every
update stamps the row with its transaction id (a trigger, `changed_xid`), and a read asks for rows
stamped at or after the oldest transaction that was still running when the previous read began. A
transaction that commits late is read again, never missed; rows are keyed by id, so reading one
twice changes nothing. Whatever changes meanwhile is caught by the locks and checks that turn a
chosen pair into an offer, as it was when rounds read the table directly.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.tables import LegRow, OfferRow, VolunteerRow
from services.dispatcher.domain import eligibility
from services.dispatcher.domain.geo import SEARCH_RADIUS_M
from shared.db import snapshot_xmin

# Only what eligibility and matching read: whole ORM entities (identity map, instance state) for
# every volunteer on duty would cost far more memory and CPU.
_MATCHING_COLUMNS = (
    VolunteerRow.id,
    VolunteerRow.on_duty,
    VolunteerRow.insured,
    VolunteerRow.vehicle,
    VolunteerRow.capacity_kg,
    VolunteerRow.skills,
    VolunteerRow.languages,
    VolunteerRow.max_active_legs,
    VolunteerRow.active_legs,
    VolunteerRow.lat,
    VolunteerRow.lon,
    VolunteerRow.location_at,
    VolunteerRow.duty_started_at,
    VolunteerRow.rest_until,
    VolunteerRow.legs_done_today,
)


@dataclass(frozen=True)
class Box:
    """A latitude/longitude box; `None` bounds leave that axis open."""

    lat_min: float
    lat_max: float
    lon_min: float | None = None
    lon_max: float | None = None

    def contains(self, lat: float, lon: float) -> bool:
        if not self.lat_min <= lat <= self.lat_max:
            return False
        return self.lon_min is None or self.lon_max is None or self.lon_min <= lon <= self.lon_max


def pickups_reach(legs: list[LegRow], policy: eligibility.Policy) -> Box:
    """The pickups' bounding box widened by the largest radius any leg may search.

    A cheap superset of who `within_radius` can accept: the solver still checks each pair, but
    need not index volunteers at the other end of the city.
    """
    reach_m = max(SEARCH_RADIUS_M.values()) * policy.radius_widening * max(1.0, policy.widen_max)
    dlat = reach_m / 111_000 + 0.01
    lat_min = min(leg.pickup_lat for leg in legs) - dlat
    lat_max = max(leg.pickup_lat for leg in legs) + dlat
    if lat_min <= -89 or lat_max >= 89:
        return Box(lat_min, lat_max)  # at the poles every longitude is close
    dlon = dlat / max(math.cos(math.radians(max(abs(lat_min), abs(lat_max)))), 0.01)
    lon_min = min(leg.pickup_lon for leg in legs) - dlon
    lon_max = max(leg.pickup_lon for leg in legs) + dlon
    if lon_min < -180 or lon_max > 180:
        return Box(lat_min, lat_max)  # the box crosses the antimeridian: latitude alone still narrows it
    return Box(lat_min, lat_max, lon_min, lon_max)


def live_offers() -> Any:
    """Per volunteer row of the enclosing query: how many offers they hold open right now."""
    return (
        select(func.count())
        .where(OfferRow.volunteer_id == VolunteerRow.id, OfferRow.status == "live")
        .correlate(VolunteerRow)
        .scalar_subquery()
    )


class Roster:
    """The volunteers who may be matched (on duty, insured, located), as of the last `refresh`.

    Held as the matcher's views, built once per change rather than once per round; the skill and
    language sets, which most volunteers share, are held once each.
    """

    def __init__(self) -> None:
        self._views: dict[uuid.UUID, eligibility.Volunteer] = {}
        self._sets: dict[tuple[str, ...], frozenset[str]] = {}
        self._since: int | None = None

    async def refresh(self, session: AsyncSession) -> list[uuid.UUID]:
        """Read the rows changed since the previous refresh (all on-duty rows the first time).

        Returns the ids of the rows read.
        """
        # Taken before the rows are read: every transaction older than this has committed or
        # aborted by then, so its writes are in this read; younger ones are read next time.
        since = await session.scalar(select(snapshot_xmin()))
        query = select(*_MATCHING_COLUMNS)
        if self._since is None:
            query = query.where(VolunteerRow.on_duty.is_(True), VolunteerRow.insured.is_(True))
        else:
            query = query.where(VolunteerRow.changed_xid >= self._since)
        rows = (await session.execute(query)).all()
        for row in rows:
            if row.on_duty and row.insured and row.lat is not None and row.lon is not None:
                self._views[row.id] = self._view(row)
            else:
                self._views.pop(row.id, None)
        self._since = since
        return [row.id for row in rows]

    async def volunteers_within(self, session: AsyncSession, box: Box) -> list[eligibility.Volunteer]:
        """Everyone on the roster inside `box`, with the offers they hold open right now."""
        inside = [v for v in self._views.values() if box.contains(v.lat, v.lon)]  # type: ignore[arg-type]
        if not inside:
            return []
        offers: dict[uuid.UUID, int] = {
            volunteer_id: count
            for volunteer_id, count in (
                await session.execute(
                    select(OfferRow.volunteer_id, func.count())
                    .where(OfferRow.status == "live")
                    .group_by(OfferRow.volunteer_id)
                )
            ).all()
        }
        return [replace(v, live_offers=offers[v.id]) if v.id in offers else v for v in inside]

    def _set(self, values: list[str]) -> frozenset[str]:
        key = tuple(sorted(values))
        found = self._sets.get(key)
        if found is None:
            found = self._sets[key] = frozenset(key)
        return found

    def _view(self, row: Any) -> eligibility.Volunteer:
        """The matcher's view of a volunteer (no open offers), from a row with the `_MATCHING_COLUMNS`."""
        return eligibility.Volunteer(
            id=row.id,
            on_duty=row.on_duty,
            insured=row.insured,
            vehicle=row.vehicle,
            capacity_kg=row.capacity_kg,
            skills=self._set(row.skills),
            languages=self._set(row.languages),
            max_active_legs=row.max_active_legs,
            active_legs=row.active_legs,
            live_offers=0,
            lat=row.lat,
            lon=row.lon,
            location_at=row.location_at,
            duty_started_at=row.duty_started_at,
            rest_until=row.rest_until,
            legs_done_today=row.legs_done_today,
        )
