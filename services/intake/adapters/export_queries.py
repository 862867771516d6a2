"""The export's one statement: legs with their tasks, created in a time range, read through a
server-side cursor so no more than a batch of rows is held at a time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import Double, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.tables import LegRow, TaskRow
from services.intake.domain.export import ExportLeg

# Rows fetched from the cursor at a time.
BATCH = 1000


def _coordinate(point: Any, name: str) -> Any:
    return cast(point.op("->>")(name), Double)


async def export_legs(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID | None,
    start: datetime,
    end: datetime,
    batch: int = BATCH,
) -> AsyncIterator[ExportLeg]:
    """Every leg of the tasks created in [start, end), oldest task first, the organisation's only
    unless `organisation_id` is None. Only coordinates are read out of the request."""
    pickup = TaskRow.request.op("->")("pickup")
    dropoff = TaskRow.request.op("->")("dropoffs").op("->")(LegRow.index)
    statement = (
        select(
            TaskRow.id,
            TaskRow.organisation_id,
            TaskRow.kind,
            TaskRow.priority,
            TaskRow.status,
            TaskRow.created_at,
            LegRow.id,
            LegRow.index,
            LegRow.status,
            LegRow.transitions,
            _coordinate(pickup, "lat"),
            _coordinate(pickup, "lon"),
            _coordinate(dropoff, "lat"),
            _coordinate(dropoff, "lon"),
            LegRow.volunteer_id,
            LegRow.volunteer_name,
        )
        .join(LegRow, LegRow.task_id == TaskRow.id)
        .where(TaskRow.created_at >= start, TaskRow.created_at < end)
        .order_by(TaskRow.created_at, TaskRow.id, LegRow.index)
        .execution_options(yield_per=batch)
    )
    if organisation_id is not None:
        statement = statement.where(TaskRow.organisation_id == organisation_id)
    result = await session.stream(statement)
    async for values in result:
        yield ExportLeg(*values)
