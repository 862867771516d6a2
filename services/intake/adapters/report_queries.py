"""The daily report's one statement: the legs of the tasks created in a day, with what the report
counts (no personal data: the drop-off's language, never its person)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.tables import LegRow, TaskRow, TimelineRow


async def day_legs(
    session: AsyncSession, *, organisation_id: uuid.UUID | None, start: datetime, end: datetime
) -> list[Any]:
    dropoff = TaskRow.request.op("->")("dropoffs").op("->")(LegRow.index)
    # What the latest `leg.assigned` said of the volunteer's languages (null before it was recorded).
    speaks = (
        select(TimelineRow.data.op("->>")("speaks_dropoff_language"))
        .where(TimelineRow.leg_id == LegRow.id, TimelineRow.type == "leg.assigned")
        .order_by(TimelineRow.time.desc())
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        select(
            TaskRow.id.label("task_id"),
            TaskRow.kind,
            TaskRow.priority,
            TaskRow.status.label("task_status"),
            TaskRow.created_at,
            LegRow.status.label("leg_status"),
            LegRow.transitions,
            LegRow.volunteer_id,
            LegRow.volunteer_name,
            LegRow.escalated_at,
            LegRow.escalation_reason,
            dropoff.op("->>")("language").label("language"),
            TaskRow.request.op("->")("requirements").op("->")("languages").label("languages_asked"),
            speaks.label("speaks_dropoff_language"),
        )
        .join(LegRow, LegRow.task_id == TaskRow.id)
        .where(TaskRow.created_at >= start, TaskRow.created_at < end)
        .order_by(TaskRow.created_at, LegRow.index)
    )
    if organisation_id is not None:
        statement = statement.where(TaskRow.organisation_id == organisation_id)
    return list((await session.execute(statement)).all())
