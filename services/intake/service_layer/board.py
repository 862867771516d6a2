"""The dispatch board's reads from intake's own read model: the legs nobody holds yet, and the legs
each volunteer holds, within one organisation.

Who is on duty (names, welfare, location) is the dispatcher's to say; the console asks it, and this
module only places intake's legs beside those volunteers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

QUEUE_LIMIT = 200
HELD_LIMIT = 1000

# Unassigned legs, most urgent first, then longest-waiting; a task that ended waits for nobody.
_QUEUE = text(
    """
SELECT l.id, l.task_id, l."index", l.status, t.kind, t.priority, t.created_at,
       t.request->>'deliver_by' AS deliver_by,
       t.request->'pickup' AS pickup, t.request->'dropoffs'->l."index" AS dropoff,
       l.escalated_at IS NOT NULL AS escalated
FROM intake.legs l JOIN intake.tasks t ON t.id = l.task_id
WHERE t.organisation_id = :organisation_id
  AND l.status IN ('pending', 'offered')
  AND t.status NOT IN ('cancelled', 'completed', 'failed', 'partially_completed')
ORDER BY CASE t.priority WHEN 'critical' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END,
         t.created_at, t.id, l."index"
LIMIT :limit
"""
)

# Legs a volunteer holds (assigned, or picked up and under way), by volunteer.
_HELD = text(
    """
SELECT l.id, l.task_id, l."index", l.status, l.volunteer_id, l.volunteer_name, l.dropoff_eta, l.eta_late,
       t.kind, t.priority, t.created_at, t.request->>'deliver_by' AS deliver_by,
       t.request->'pickup' AS pickup, t.request->'dropoffs'->l."index" AS dropoff,
       l.escalated_at IS NOT NULL AS escalated
FROM intake.legs l JOIN intake.tasks t ON t.id = l.task_id
WHERE t.organisation_id = :organisation_id
  AND l.status IN ('assigned', 'picked_up')
  AND l.volunteer_id IS NOT NULL
ORDER BY l.volunteer_id, CASE t.priority WHEN 'critical' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END,
         t.created_at, l."index"
LIMIT :limit
"""
)


@dataclass(frozen=True)
class BoardLeg:
    """One leg as a card on the board."""

    id: uuid.UUID
    task_id: uuid.UUID
    index: int
    status: str
    kind: str
    priority: str
    created_at: datetime
    deliver_by: str | None
    pickup_address: str | None
    pickup_lat: float | None
    pickup_lon: float | None
    dropoff_address: str | None
    dropoff_lat: float | None
    dropoff_lon: float | None
    escalated: bool
    volunteer_id: uuid.UUID | None = None
    volunteer_name: str | None = None
    dropoff_eta: datetime | None = None
    eta_late: bool = False

    @property
    def short_id(self) -> str:
        return f"{str(self.task_id)[:8]}-{self.index + 1}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _leg(row: Any) -> BoardLeg:
    pickup: dict[str, Any] = row.pickup if isinstance(row.pickup, dict) else {}
    dropoff: dict[str, Any] = row.dropoff if isinstance(row.dropoff, dict) else {}
    mapping = row._mapping
    return BoardLeg(
        id=row.id,
        task_id=row.task_id,
        index=row.index,
        status=row.status,
        kind=row.kind,
        priority=row.priority,
        created_at=row.created_at,
        deliver_by=row.deliver_by,
        pickup_address=_text(pickup.get("address")),
        pickup_lat=_number(pickup.get("lat")),
        pickup_lon=_number(pickup.get("lon")),
        dropoff_address=_text(dropoff.get("address")),
        dropoff_lat=_number(dropoff.get("lat")),
        dropoff_lon=_number(dropoff.get("lon")),
        escalated=bool(row.escalated),
        volunteer_id=mapping.get("volunteer_id"),
        volunteer_name=mapping.get("volunteer_name"),
        dropoff_eta=mapping.get("dropoff_eta"),
        eta_late=bool(mapping.get("eta_late")),
    )


async def unassigned_legs(
    session: AsyncSession, *, organisation_id: uuid.UUID, limit: int = QUEUE_LIMIT
) -> list[BoardLeg]:
    """The organisation's legs nobody holds yet: critical, then urgent, then routine; oldest first."""
    rows = await session.execute(_QUEUE, {"organisation_id": organisation_id, "limit": limit})
    return [_leg(row) for row in rows]


async def held_legs(
    session: AsyncSession, *, organisation_id: uuid.UUID, limit: int = HELD_LIMIT
) -> dict[uuid.UUID, list[BoardLeg]]:
    """The organisation's legs in a volunteer's hands, by volunteer id, most urgent first."""
    held: dict[uuid.UUID, list[BoardLeg]] = {}
    for row in await session.execute(_HELD, {"organisation_id": organisation_id, "limit": limit}):
        leg = _leg(row)
        assert leg.volunteer_id is not None
        held.setdefault(leg.volunteer_id, []).append(leg)
    return held


_ORGANISATION_VOLUNTEERS = text("SELECT id FROM intake.volunteers WHERE organisation_id = :organisation_id")


async def organisation_volunteer_ids(session: AsyncSession, *, organisation_id: uuid.UUID) -> set[str]:
    """The ids of the organisation's volunteers, as intake's projection of the registry knows them.

    The dispatcher scopes an operator's lists to their organisation itself, but shows `ops` every
    organisation's: the console keeps to the person's own with this set.
    """
    rows = await session.execute(_ORGANISATION_VOLUNTEERS, {"organisation_id": organisation_id})
    return {str(row.id) for row in rows}
