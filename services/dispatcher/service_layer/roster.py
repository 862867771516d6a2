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

import asyncio
import math
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.domain import eligibility
from services.dispatcher.domain.geo import SEARCH_RADIUS_M
from services.dispatcher.domain.matching import Pool, unit_sphere
from services.dispatcher.service_layer.volunteers import duty_record


@dataclass(frozen=True)
class Box:
    """A latitude/longitude box; `None` bounds leave that axis open."""

    lat_min: float
    lat_max: float
    lon_min: float | None = None
    lon_max: float | None = None

    def mask(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Which of these points lie inside (NaN points never do)."""
        inside = (lat >= self.lat_min) & (lat <= self.lat_max)
        if self.lon_min is not None and self.lon_max is not None:
            inside &= (lon >= self.lon_min) & (lon <= self.lon_max)
        return inside


def pickups_reach(pickups: Box, policy: eligibility.Policy) -> Box:
    """The pickups' bounding box widened by the largest radius any leg may search.

    A cheap superset of who `within_radius` can accept: the solver still checks each pair, but
    need not index volunteers at the other end of the country.
    """
    assert pickups.lon_min is not None and pickups.lon_max is not None
    reach_m = max(SEARCH_RADIUS_M.values()) * policy.radius_widening * max(1.0, policy.widen_max)
    dlat = reach_m / 111_000 + 0.01
    lat_min = pickups.lat_min - dlat
    lat_max = pickups.lat_max + dlat
    if lat_min <= -89 or lat_max >= 89:
        return Box(lat_min, lat_max)  # at the poles every longitude is close
    dlon = dlat / max(math.cos(math.radians(max(abs(lat_min), abs(lat_max)))), 0.01)
    lon_min = pickups.lon_min - dlon
    lon_max = pickups.lon_max + dlon
    if lon_min < -180 or lon_max > 180:
        return Box(lat_min, lat_max)  # the box crosses the antimeridian: latitude alone still narrows it
    return Box(lat_min, lat_max, lon_min, lon_max)


class Roster:
    """The volunteers who may be matched (on duty, insured, located), as of the last `refresh`.

    Insurance that lapses is not a change to the row: whoever declared cover stays on the roster,
    and the pool built for each round (`eligibility.insured`) leaves out those whose cover has ended.

    Held as the matcher's views, built once per change rather than once per round; the skill and
    language sets, which most volunteers share, are held once each.
    """

    def __init__(self) -> None:
        # One slot per volunteer: their view, and their position and organisation (as a small
        # number, `_team`) in arrays the filter reads at once. A volunteer who leaves frees their
        # slot (NaN position, no organisation) for the next.
        self._views: list[eligibility.Volunteer | None] = []
        self._slot: dict[uuid.UUID, int] = {}
        self._free: list[int] = []
        self._lat = np.empty(0)
        self._lon = np.empty(0)
        # The same positions as `unit_sphere` points, which a pool's index is built from.
        self._xyz = np.empty((0, 3))
        self._org = np.empty(0, dtype=np.int64)
        # Per slot: until when its view passes the volunteer-only rules, as a pool found
        # (`matching.Pool`'s `found_until`); -inf once the view is replaced, until a pool asks.
        self._until = np.empty(0)
        self._replaced = 0  # views replaced so far: a pool built meanwhile is not remembered
        self._team: dict[uuid.UUID, int] = {}
        self._sets: dict[tuple[str, ...], frozenset[str]] = {}
        self._since: int | None = None
        # Open offers per volunteer as last read, already in their views: a round copies only
        # the views whose count changed, not everyone who holds an offer.
        self._offers: dict[uuid.UUID, int] = {}

    def __len__(self) -> int:
        return len(self._slot)

    async def refresh(self, session: AsyncSession) -> list[uuid.UUID]:
        """Read the rows changed since the previous refresh (all on-duty rows the first time).

        Returns the ids of the rows read.
        """
        # The oldest transaction running when the rows were read (same statement, same snapshot):
        # every older one had committed or aborted, so its writes are in this read; younger ones
        # are read next time. With no rows changed, the previous bound still holds.
        read: list[uuid.UUID] = []
        placed: list[int] = []
        since = self._since
        async for rows in repository.matchable_volunteers(session, changed_since=self._since):
            since = rows[0].since
            for row in rows:
                if row.on_duty and row.insured and row.lat is not None and row.lon is not None:
                    placed.append(self._put(self._view(row)))
                else:
                    self._drop(row.id)
                read.append(row.id)
        if placed:
            self._xyz[placed] = unit_sphere(self._lat[placed], self._lon[placed])
        self._since = since
        return read

    def _put(self, view: eligibility.Volunteer) -> int:
        """The view in its slot (the volunteer's own, or a free one); the slot."""
        slot = self._slot.get(view.id)
        if slot is None:
            slot = self._free.pop() if self._free else self._new_slot()
            self._slot[view.id] = slot
        self._views[slot] = view
        self._until[slot] = -math.inf
        self._replaced += 1
        self._lat[slot], self._lon[slot] = view.lat, view.lon
        self._org[slot] = self._team.setdefault(view.organisation_id, len(self._team))
        return slot

    def _drop(self, volunteer_id: uuid.UUID) -> None:
        slot = self._slot.pop(volunteer_id, None)
        if slot is not None:
            self._views[slot] = None
            self._until[slot] = -math.inf
            self._replaced += 1
            self._lat[slot] = self._lon[slot] = np.nan
            self._org[slot] = -1
            self._free.append(slot)

    def _new_slot(self) -> int:
        slot = len(self._views)
        self._views.append(None)
        if slot == len(self._lat):  # full: double the arrays
            room = np.full(max(1024, slot), np.nan)
            self._lat, self._lon = np.concatenate((self._lat, room)), np.concatenate((self._lon, room))
            self._xyz = np.concatenate((self._xyz, np.full((len(room), 3), np.nan)))
            self._until = np.concatenate((self._until, np.full(len(room), -math.inf)))
            self._org = np.concatenate((self._org, np.full(len(room), -1, dtype=np.int64)))
        return slot

    async def volunteers_within(
        self, session: AsyncSession, box: Box, *, organisations: Collection[uuid.UUID]
    ) -> list[eligibility.Volunteer]:
        """Everyone on the roster inside `box` and of one of `organisations`, with their open offers."""
        return [self._views[slot] for slot in await self._slots_within(session, box, organisations)]  # type: ignore[misc]

    async def pool(
        self,
        session: AsyncSession,
        box: Box,
        *,
        organisations: Collection[uuid.UUID],
        now: datetime,
        policy: eligibility.Policy,
    ) -> Pool:
        """The available among `volunteers_within` at `now`, built on a worker thread.

        Only the views replaced since a pool found them available, or whose time found then is up,
        are asked the volunteer-only rules (`Pool`'s `known`). One caller at a time: the matcher's
        task.
        """
        slots = await self._slots_within(session, box, organisations)
        replaced = self._replaced
        pool = await asyncio.to_thread(
            Pool,
            [self._views[slot] for slot in slots],  # type: ignore[misc]
            now,
            policy,
            known=(self._until[slots] > now.timestamp()).tolist(),
            points=self._xyz[slots],
        )
        if self._replaced == replaced:
            for i, until in pool.found_until.items():
                self._until[slots[i]] = until
        return pool

    async def _slots_within(
        self, session: AsyncSession, box: Box, organisations: Collection[uuid.UUID]
    ) -> list[int]:
        used = len(self._views)
        teams = [self._team[o] for o in organisations if o in self._team]
        inside = box.mask(self._lat[:used], self._lon[:used]) & np.isin(self._org[:used], teams)
        slots: list[int] = np.flatnonzero(inside).tolist()
        if not slots:
            return []
        offers = await repository.live_offer_counts(session)
        for volunteer_id in self._offers.keys() - offers.keys():
            self._count_offers(volunteer_id, 0)
        for volunteer_id, count in offers.items():
            if self._offers.get(volunteer_id) != count:
                self._count_offers(volunteer_id, count)
        self._offers = offers
        return slots

    def _count_offers(self, volunteer_id: uuid.UUID, count: int) -> None:
        slot = self._slot.get(volunteer_id)  # None: not on the roster now; the count waits for them
        if slot is not None:
            self._views[slot] = replace(self._views[slot], live_offers=count)  # type: ignore[type-var]
            self._until[slot] = -math.inf
            self._replaced += 1

    def _set(self, values: list[str]) -> frozenset[str]:
        key = tuple(sorted(values))
        found = self._sets.get(key)
        if found is None:
            found = self._sets[key] = frozenset(key)
        return found

    def _view(self, row: Any) -> eligibility.Volunteer:
        """The matcher's view of a volunteer, from a row of `repository.matchable_volunteers`.

        Their open offers are as last counted (`volunteers_within` keeps them current).
        """
        return matching_view(row, live_offers=self._offers.get(row.id, 0), interned=self._set)


def matching_view(
    row: Any, *, live_offers: int = 0, interned: Callable[[list[str]], frozenset[str]] = frozenset
) -> eligibility.Volunteer:
    """A volunteer as the eligibility rules read them, from a volunteers row (or its `MATCHING_COLUMNS`).

    `interned` turns skills and languages into sets (the roster shares equal ones between volunteers).
    """
    return eligibility.Volunteer(
        id=row.id,
        organisation_id=row.organisation_id,
        on_duty=row.on_duty,
        insured=row.insured,
        vehicle=row.vehicle,
        capacity_kg=row.capacity_kg,
        skills=interned(row.skills),
        languages=interned(row.languages),
        max_active_legs=row.max_active_legs,
        active_legs=row.active_legs,
        live_offers=live_offers,
        lat=row.lat,
        lon=row.lon,
        location_at=row.location_at,
        duty_started_at=row.duty_started_at,
        rest_until=row.rest_until,
        legs_done_today=row.legs_done_today,
        duty=duty_record(row),
        insured_until=row.insured_until,
        vetted=row.vetting_status == "approved",
    )
