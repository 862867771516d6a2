"""The CSV export (lines produced as the cursor yields rows, for a streamed answer or a file) and
the daily report."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.export_queries import export_legs
from services.intake.adapters.report_queries import day_legs
from services.intake.domain.daily_report import DailyFigures, figures, summarise
from services.intake.domain.export import HEADER, csv_line, row


async def export_lines(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID | None,
    start: datetime,
    end: datetime,
    volunteer_names: bool,
) -> AsyncIterator[str]:
    """The header, then one line per leg; `volunteer_names` for an organisation's operators (masked
    names), otherwise volunteer ids."""
    legs = export_legs(session, organisation_id=organisation_id, start=start, end=end)
    # The query runs before the header is handed out, so its failure comes before any answer.
    first = await anext(legs, None)
    yield HEADER
    if first is None:
        return
    yield csv_line(row(first, volunteer_names=volunteer_names))
    async for leg in legs:
        yield csv_line(row(leg, volunteer_names=volunteer_names))


async def daily_report(
    *, session: AsyncSession, organisation_id: uuid.UUID | None, day: date, time_zone: str
) -> DailyFigures:
    """The figures of the tasks created on `day` in `time_zone`; an organisation's operators see
    volunteers' masked names, ops volunteer ids."""
    zone = ZoneInfo(time_zone)
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    rows = await day_legs(session, organisation_id=organisation_id, start=start, end=end)
    report = summarise(rows, day=day, time_zone=time_zone, volunteer_names=organisation_id is not None)
    return figures(report)
