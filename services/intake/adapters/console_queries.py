"""The operator console's reads that the API has no route for: one organisation's open escalations.

An escalation is open while a task waits for a person: the task itself is escalated (and no
coordinator has decided about one of its legs since), one of its legs was escalated on its own (late
or stuck) and is not done, a leg was handed back after pickup and waits for a decision
(`needs_decision`), or a delivery was flagged for too many wrong codes (delivered and escalated).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ningbo import DISTRICTS

_OPEN_ESCALATIONS = text(
    """
SELECT t.id, t.kind, t.priority, t.status,
       EXISTS (SELECT 1 FROM intake.legs l WHERE l.task_id = t.id
               AND (l.status = 'needs_decision'
                    OR (l.status = 'delivered' AND l.escalation_reason = 'delivery_flagged')))
         AS needs_decision,
       count(*) OVER () AS total
FROM intake.tasks t
WHERE t.organisation_id = :organisation_id
  AND t.status NOT IN ('cancelled', 'completed', 'failed', 'partially_completed')
  AND ((t.status = 'escalated'
        AND NOT EXISTS (SELECT 1 FROM intake.timeline d
                        WHERE d.task_id = t.id AND d.type = 'leg.decided'
                          AND d.time >= (t.transitions->>'escalated')::timestamptz))
       OR EXISTS (SELECT 1 FROM intake.legs l
                  WHERE l.task_id = t.id AND l.status = 'needs_decision')
       OR EXISTS (SELECT 1 FROM intake.legs l
                  WHERE l.task_id = t.id AND l.escalated_at IS NOT NULL
                    AND (l.status IN ('pending', 'offered', 'assigned', 'picked_up')
                         OR (l.status = 'delivered' AND l.escalation_reason = 'delivery_flagged'))))
ORDER BY t.created_at, t.id
LIMIT :limit
"""
)


@dataclass(frozen=True, slots=True)
class EscalatedTask:
    id: uuid.UUID
    kind: str
    priority: str
    status: str
    needs_decision: bool


@dataclass(frozen=True, slots=True)
class Escalations:
    total: int
    tasks: list[EscalatedTask]


async def escalations(session: AsyncSession, *, organisation_id: uuid.UUID, limit: int = 20) -> Escalations:
    """The organisation's open escalations, oldest task first (the first `limit`), and how many."""
    rows = (
        await session.execute(_OPEN_ESCALATIONS, {"organisation_id": organisation_id, "limit": limit})
    ).all()
    return Escalations(
        total=int(rows[0].total) if rows else 0,
        tasks=[
            EscalatedTask(
                id=row.id,
                kind=row.kind,
                priority=row.priority,
                status=row.status,
                needs_decision=bool(row.needs_decision),
            )
            for row in rows
        ],
    )


# The task list's filters. The district is the one whose centre is nearest the pickup (none when
# the pickup is far from them all); the time
# window matches a task due in it (its deadline), or created in it when it has none; the text is
# looked for anywhere in the request (names, addresses, items, notes, reference).
_DISTRICT_OF_PICKUP = """
(SELECT d.name FROM (VALUES {values}) AS d(name, lat, lon)
  CROSS JOIN LATERAL (SELECT power(d.lat - (t.request->'pickup'->>'lat')::float8, 2)
         + power((d.lon - (t.request->'pickup'->>'lon')::float8) * cos(radians(d.lat)), 2) AS far) f
  WHERE f.far < {reach}
  ORDER BY f.far
  LIMIT 1)
"""
# A pickup farther than this from every district's centre (in degrees, about 45 km) is in none.
DISTRICT_REACH_DEG = 0.4


def _district_sql() -> str:
    values = ", ".join(f"('{district.name}', {district.lat}, {district.lon})" for district in DISTRICTS)
    return _DISTRICT_OF_PICKUP.format(values=values, reach=DISTRICT_REACH_DEG**2)


# Built once from constants (the districts' names and centres), never from input.
_TASK_LIST = text(
    f"""
SELECT t.id, t.seq, t.kind, t.priority, t.status, t.created_at, t.updated_at,
       (t.request->>'deliver_by')::timestamptz AS deliver_by,
       t.request->>'external_ref' AS external_ref,
       t.request->'pickup'->>'address' AS pickup_address,
       jsonb_array_length(t.request->'dropoffs') AS dropoffs,
       {_district_sql()} AS district
FROM intake.tasks t
WHERE t.organisation_id = :organisation_id
  AND (CAST(:status AS text) IS NULL OR t.status = :status)
  AND (CAST(:kind AS text) IS NULL OR t.kind = :kind)
  AND (CAST(:priority AS text) IS NULL OR t.priority = :priority)
  AND (CAST(:since AS timestamptz) IS NULL
       OR COALESCE((t.request->>'deliver_by')::timestamptz, t.created_at) >= :since)
  AND (CAST(:until AS timestamptz) IS NULL
       OR COALESCE((t.request->>'deliver_by')::timestamptz, t.created_at) < :until)
  AND (CAST(:pattern AS text) IS NULL OR t.request::text ILIKE :pattern ESCAPE '\\'
       OR t.id::text LIKE :pattern ESCAPE '\\')
  AND (CAST(:before AS bigint) IS NULL OR t.seq < :before)
  AND (CAST(:district AS text) IS NULL OR {_district_sql()} = :district)
ORDER BY t.seq DESC
LIMIT :limit
"""  # noqa: S608
)

_LEGS_OF = text(
    """
SELECT task_id, "index" AS position, status, volunteer_name, dropoff_eta, eta_late
FROM intake.legs WHERE task_id = ANY(:task_ids) ORDER BY task_id, "index"
"""
)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    status: str | None = None
    kind: str | None = None
    priority: str | None = None
    district: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class LegSummary:
    index: int
    status: str
    volunteer_name: str | None
    dropoff_eta: datetime | None
    eta_late: bool


@dataclass(frozen=True, slots=True)
class TaskSummary:
    id: uuid.UUID
    seq: int
    kind: str
    priority: str
    status: str
    created_at: datetime
    updated_at: datetime
    deliver_by: datetime | None
    external_ref: str | None
    district: str | None
    legs: list[LegSummary]


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def task_list(
    session: AsyncSession, *, organisation_id: uuid.UUID, query: TaskFilter
) -> tuple[list[TaskSummary], bool]:
    """One organisation's tasks matching `query`, newest first, and whether more follow."""
    rows = (
        await session.execute(
            _TASK_LIST,
            {
                "organisation_id": organisation_id,
                "status": query.status,
                "kind": query.kind,
                "priority": query.priority,
                "district": query.district,
                "since": query.since,
                "until": query.until,
                "pattern": _like(query.text) if query.text else None,
                "before": query.before,
                "limit": query.limit + 1,
            },
        )
    ).all()
    page, more = rows[: query.limit], len(rows) > query.limit
    legs: dict[uuid.UUID, list[LegSummary]] = {row.id: [] for row in page}
    if page:
        for leg in (await session.execute(_LEGS_OF, {"task_ids": list(legs)})).all():
            legs[leg.task_id].append(
                LegSummary(leg.position, leg.status, leg.volunteer_name, leg.dropoff_eta, bool(leg.eta_late))
            )
    return [
        TaskSummary(
            id=row.id,
            seq=row.seq,
            kind=row.kind,
            priority=row.priority,
            status=row.status,
            created_at=row.created_at,
            updated_at=row.updated_at,
            deliver_by=row.deliver_by,
            external_ref=row.external_ref,
            district=row.district,
            legs=legs[row.id],
        )
        for row in page
    ], more
