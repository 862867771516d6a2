"""The ops dashboard's numbers, read from intake's own tables, and the feed that streams them live."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, get_args

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.adapters import dashboard_queries as queries
from services.intake.domain.dashboard import NINGBO, MapFrame, format_duration
from services.intake.domain.model import TaskStatus
from services.intake.domain.timings import DISPATCH_TIMINGS
from shared.ningbo import DISTRICTS

log = structlog.get_logger(__name__)

TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)
LIST_LIMIT = 12
POINTS_LIMIT = 5000
TIMINGS_WINDOW_S = 3600
STALE_LOCATION_S = 15 * 60


def _map(frame: MapFrame) -> dict[str, Any]:
    districts = []
    for district in DISTRICTS:
        where = frame.project(district.lat, district.lon)
        if where is not None:
            districts.append(
                {
                    "name": district.name,
                    "name_zh": district.name_zh,
                    "x": where[0],
                    "y": where[1],
                    "radius": round(district.spread_km * frame.units_per_km, 1),
                }
            )
    return {
        "width": round(frame.width, 1),
        "height": round(frame.height, 1),
        "units_per_km": round(frame.units_per_km, 4),
        "districts": districts,
    }


async def dispatch_timings(
    *, session: AsyncSession, window_s: int = TIMINGS_WINDOW_S, organisation_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """p50 and p90 of the three dispatch timings over legs that completed them in the last `window_s`."""
    rows = await queries.timing_percentiles(session, window_s=window_s, organisation_id=organisation_id)
    timings = []
    for timing in DISPATCH_TIMINGS:
        row = rows.get(timing.name)
        p50 = float(row.p50) if row is not None else None
        p90 = float(row.p90) if row is not None else None
        timings.append(
            {
                "name": timing.name,
                "label": timing.label,
                "legs": row.legs if row is not None else 0,
                "p50_s": p50,
                "p90_s": p90,
                "p50": format_duration(p50),
                "p90": format_duration(p90),
            }
        )
    return timings


async def ops_snapshot(
    *, session: AsyncSession, frame: MapFrame = NINGBO, limit: int = LIST_LIMIT
) -> dict[str, Any]:
    """Everything the dashboard shows at this moment, across every organisation (ops is read-only)."""
    counts = dict.fromkeys(TASK_STATUSES, 0)
    counts.update(await queries.task_counts(session))
    escalated = [dict(row._mapping) for row in await queries.escalated_tasks(session, limit=limit)]
    waiting_rows = await queries.waiting_legs(session, limit=limit)
    escalated_legs = await queries.escalated_legs(session, limit=limit)
    on_duty = await queries.volunteers_on_duty(session)
    points, outside = [], 0
    for row in await queries.volunteer_locations(session, stale_s=STALE_LOCATION_S, limit=POINTS_LIMIT):
        if row.lat is None or row.lon is None or row.location_at is None:
            continue
        where = frame.project(row.lat, row.lon)
        if where is None:
            outside += 1
            continue
        points.append(
            {
                "id": str(row.id),
                "x": where[0],
                "y": where[1],
                "lat": row.lat,
                "lon": row.lon,
                "vehicle": row.vehicle,
                "name_masked": row.name_masked,
                "location_at": row.location_at,
                "stale": bool(row.stale),
            }
        )
    return {
        "generated_at": datetime.now(UTC),
        "tasks_total": sum(counts.values()),
        "tasks_by_status": counts,
        "escalated_total": counts.get("escalated", 0),
        "escalated": [
            {**row, "id": str(row["id"]), "legs_waiting": int(row["legs_waiting"])} for row in escalated
        ],
        "escalated_legs_total": escalated_legs[0].total if escalated_legs else 0,
        "escalated_legs": [
            {
                "id": str(row.id),
                "task_id": str(row.task_id),
                "index": row.index,
                "status": row.status,
                "priority": row.priority,
                "reason": row.escalation_reason,
                "escalated_at": row.escalated_at,
                "dropoff_eta": row.dropoff_eta,
                "deliver_by": row.deliver_by,
            }
            for row in escalated_legs
        ],
        "waiting_total": waiting_rows[0].total if waiting_rows else 0,
        "waiting": [
            {
                "id": str(row.id),
                "task_id": str(row.task_id),
                "index": row.index,
                "status": row.status,
                "kind": row.kind,
                "priority": row.priority,
                "waiting_since": row.waiting_since,
                "status_since": row.status_since,
            }
            for row in waiting_rows
        ],
        "volunteers": {
            "on_duty": on_duty,
            "located": len(points),
            "outside_map": outside,
            "points": points,
        },
        "timings_window_s": TIMINGS_WINDOW_S,
        "timings": await dispatch_timings(session=session),
        "map": _map(frame),
    }


class _Subscriber:
    def __init__(self) -> None:
        # Only the newest snapshot matters: a slow reader skips the ones it had no time for.
        self.updates: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1)
        self.primed = False

    def offer(self, snapshot: dict[str, Any] | None) -> None:
        if self.updates.full():
            self.updates.get_nowait()
        self.updates.put_nowait(snapshot)
        self.primed = True


class DashboardFeed:
    """Reads the snapshot once per interval while anyone watches, and hands it to every watcher on change.

    However many dashboards are open, the database sees one set of queries per interval, and none
    while nobody watches.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, interval_s: float = 1.0) -> None:
        self._sessionmaker = sessionmaker
        self._interval_s = interval_s
        self._subscribers: set[_Subscriber] = set()
        self._watched = asyncio.Event()
        self._nudge = asyncio.Event()
        self._latest: dict[str, Any] | None = None
        self._latest_content: dict[str, Any] | None = None
        self._closed = False

    async def read(self) -> dict[str, Any]:
        async with self._sessionmaker() as session:
            return await ops_snapshot(session=session)

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[dict[str, Any] | None]]:
        """Snapshots as they change, the current one first; None once the feed closes."""
        subscriber = _Subscriber()
        if self._closed:
            subscriber.offer(None)
        elif self._latest is not None:
            subscriber.offer(self._latest)
        self._subscribers.add(subscriber)
        self._watched.set()
        self._nudge.set()
        try:
            yield subscriber.updates
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                self._watched.clear()
                # Nobody watches: a snapshot kept now would be stale for the next one to come.
                self._latest = self._latest_content = None

    def close(self) -> None:
        """End every subscription (on shutdown, so open streams never hold the server up)."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.offer(None)

    async def run(self) -> None:
        while not self._closed:
            await self._watched.wait()
            self._nudge.clear()
            try:
                snapshot = await self.read()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("dashboard.read_failed", error=repr(exc))
            else:
                content = {k: v for k, v in snapshot.items() if k != "generated_at"}
                changed = content != self._latest_content
                if self._subscribers:
                    self._latest, self._latest_content = snapshot, content
                for subscriber in list(self._subscribers):
                    if changed or not subscriber.primed:
                        subscriber.offer(snapshot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), timeout=self._interval_s)
