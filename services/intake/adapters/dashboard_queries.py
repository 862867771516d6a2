"""The ops dashboard's reads: counts, escalations, waiting legs, volunteers on the map, timing percentiles.

Raw SQL: the percentiles and window counts read most clearly as SQL, and these run once a second
while anyone watches.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

_TASK_COUNTS = text("SELECT status, count(*) AS n FROM intake.tasks GROUP BY status")

_ESCALATED = text(
    """
SELECT t.id, t.kind, t.priority, t.created_at,
       (t.transitions->>'escalated')::timestamptz AS escalated_at,
       (SELECT count(*) FROM intake.legs l
         WHERE l.task_id = t.id AND l.status IN ('pending', 'offered')) AS legs_waiting
FROM intake.tasks t
WHERE t.status = 'escalated'
ORDER BY t.created_at, t.id
LIMIT :limit
"""
)

# Legs escalated on their own (late, or stuck in a status) and not yet done, latest escalation first;
# the partial index holds only legs ever escalated.
_ESCALATED_LEGS = text(
    """
SELECT l.id, l.task_id, l."index", l.status, l.escalation_reason, l.escalated_at, l.dropoff_eta,
       t.priority, (t.request->>'deliver_by')::timestamptz AS deliver_by,
       count(*) OVER () AS total
FROM intake.legs l JOIN intake.tasks t ON t.id = l.task_id
WHERE l.escalated_at IS NOT NULL
  AND l.status IN ('pending', 'offered', 'assigned', 'picked_up')
  AND t.status NOT IN ('cancelled', 'completed')
ORDER BY l.escalated_at DESC, l.id
LIMIT :limit
"""
)

# The legs nobody has taken yet, longest-waiting first; the partial index holds exactly these.
_WAITING = text(
    """
SELECT l.id, l.task_id, l."index", l.status, t.kind, t.priority, t.created_at AS waiting_since,
       (l.transitions->>l.status)::timestamptz AS status_since,
       count(*) OVER () AS total
FROM intake.legs l JOIN intake.tasks t ON t.id = l.task_id
WHERE l.status IN ('pending', 'offered') AND t.status NOT IN ('cancelled', 'completed')
ORDER BY t.created_at, t.id, l."index"
LIMIT :limit
"""
)

_VOLUNTEERS = text(
    """
SELECT id, vehicle, name_masked, lat, lon, location_at,
       location_at < now() - make_interval(secs => :stale_s) AS stale
FROM intake.volunteers
WHERE on_duty
ORDER BY location_at DESC NULLS LAST
LIMIT :limit
"""
)

_ON_DUTY = text("SELECT count(*) FROM intake.volunteers WHERE on_duty")

# Percentiles over the legs that completed each timing inside the window, from their transitions.
# A leg's `updated_at` is the time of its latest change, never earlier than any transition, so it
# narrows the scan (by index) to legs that can have completed a timing inside the window.
_TIMINGS = text(
    """
WITH recent AS (
    SELECT t.created_at AS submitted,
           (l.transitions->>'offered')::timestamptz AS offered,
           (l.transitions->>'assigned')::timestamptz AS assigned,
           (l.transitions->>'confirmed')::timestamptz AS confirmed
    FROM intake.legs l JOIN intake.tasks t ON t.id = l.task_id
    WHERE l.updated_at >= now() - make_interval(secs => :window_s)
      AND (CAST(:organisation_id AS uuid) IS NULL OR t.organisation_id = CAST(:organisation_id AS uuid))
), spans AS (
    SELECT 'submission_to_offer' AS name, extract(epoch FROM offered - submitted) AS s
      FROM recent WHERE offered >= now() - make_interval(secs => :window_s)
    UNION ALL
    SELECT 'offer_to_assignment', extract(epoch FROM assigned - offered)
      FROM recent WHERE assigned >= now() - make_interval(secs => :window_s) AND offered IS NOT NULL
    UNION ALL
    SELECT 'assignment_to_confirmation', extract(epoch FROM confirmed - assigned)
      FROM recent WHERE confirmed >= now() - make_interval(secs => :window_s) AND assigned IS NOT NULL
)
SELECT name, count(*) AS legs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(s, 0)) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY greatest(s, 0)) AS p90
FROM spans GROUP BY name
"""
)


async def task_counts(session: AsyncSession) -> dict[str, int]:
    """How many tasks are in each status (statuses with none are absent)."""
    return {row.status: row.n for row in await session.execute(_TASK_COUNTS)}


async def escalated_tasks(session: AsyncSession, *, limit: int) -> list[Row[Any]]:
    """The escalated tasks, oldest first, each with how many of its legs still wait."""
    return list(await session.execute(_ESCALATED, {"limit": limit}))


async def escalated_legs(session: AsyncSession, *, limit: int) -> list[Row[Any]]:
    """Legs escalated on their own and not yet done, latest first, each row with the `total` of them."""
    return list(await session.execute(_ESCALATED_LEGS, {"limit": limit}))


async def waiting_legs(session: AsyncSession, *, limit: int) -> list[Row[Any]]:
    """The legs nobody has taken yet, longest-waiting first, each row with the `total` of them."""
    return list(await session.execute(_WAITING, {"limit": limit}))


async def volunteers_on_duty(session: AsyncSession) -> int:
    count: int = (await session.execute(_ON_DUTY)).scalar_one()
    return count


async def volunteer_locations(session: AsyncSession, *, stale_s: int, limit: int) -> list[Row[Any]]:
    """Volunteers on duty, freshest location first, each marked stale when older than `stale_s`."""
    return list(await session.execute(_VOLUNTEERS, {"stale_s": stale_s, "limit": limit}))


async def timing_percentiles(
    session: AsyncSession, *, window_s: int, organisation_id: uuid.UUID | None
) -> dict[str, Row[Any]]:
    """p50 and p90 of each dispatch timing completed inside the window, by timing name."""
    rows = await session.execute(_TIMINGS, {"window_s": window_s, "organisation_id": organisation_id})
    return {row.name: row for row in rows}
