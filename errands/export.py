"""`errands export`: the CSV export of tasks and legs, straight from the database to a stream.

The same lines as `GET /v1/exports/tasks.csv`: with `--organisation`, that organisation's tasks with
volunteers' masked names (as its operators see them); without, every organisation's with volunteer ids.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TextIO

from services.intake.service_layer.export import export_lines
from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings


async def export_csv(
    settings: Settings,
    out: TextIO,
    *,
    start: datetime,
    end: datetime,
    organisation_id: uuid.UUID | None = None,
) -> int:
    """Write the export to `out`; returns how many legs (rows after the header) were written."""
    engine = create_engine(settings, pool_size=1)
    rows = -1
    try:
        async with create_sessionmaker(engine)() as session:
            async for line in export_lines(
                session=session,
                organisation_id=organisation_id,
                start=start,
                end=end,
                volunteer_names=organisation_id is not None,
            ):
                out.write(line)
                rows += 1
    finally:
        await engine.dispose()
    out.flush()
    return rows
