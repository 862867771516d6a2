"""The CSV export's memory: exporting 100,000 tasks must not hold them.

One embedded PostgreSQL with `tasks` tasks of one leg each (written by SQL, a second apart). In the same
run and process, under tracemalloc:

- `streamed[n]`: the export of the first n tasks (10,000, then all) through the service layer the
  route and `errands export` use, written to a sink that only counts bytes; its peak should not grow
  with n (`ratio_100k_vs_10k`, target <= 1.5x);
- `materialised`: the baseline of holding every row of the 100,000 at once (a list of them), which is
  what streaming avoids (`ratio_streamed_vs_materialised`).

Run: `python -m bench.export_memory`.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from errands.migrate import upgrade
from errands.stack import EmbeddedStack
from services.intake.adapters.export_queries import export_legs
from services.intake.service_layer.export import export_lines
from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings

START = datetime(2026, 1, 1, tzinfo=UTC)

_FILL = text(
    """
    WITH made AS (
        INSERT INTO intake.tasks (id, organisation_id, kind, priority, status, request, transitions,
                                  created_at, updated_at)
        SELECT gen_random_uuid(), :org, 'errand', 'routine', 'completed',
               jsonb_build_object(
                   'kind', 'errand',
                   'pickup', jsonb_build_object('lat', 29.87 + (i % 100) * 0.001, 'lon', 121.55),
                   'dropoffs', jsonb_build_array(
                       jsonb_build_object('lat', 29.80 + (i % 300) * 0.001, 'lon', 121.60,
                                          'recipient_name', 'withheld'))),
               '{}'::jsonb,
               CAST(:start AS timestamptz) + make_interval(secs => i),
               CAST(:start AS timestamptz) + make_interval(secs => i)
        FROM generate_series(1, CAST(:n AS integer)) AS i
        RETURNING id, created_at
    )
    INSERT INTO intake.legs (id, task_id, index, status, code_hash, volunteer_id, volunteer_name,
                             transitions, updated_at)
    SELECT gen_random_uuid(), id, 0, 'confirmed', 'x', gen_random_uuid(), 'Wang L.',
           jsonb_build_object('offered', created_at, 'assigned', created_at + interval '20 seconds',
                              'picked_up', created_at + interval '10 minutes',
                              'delivered', created_at + interval '30 minutes',
                              'confirmed', created_at + interval '31 minutes'),
           created_at
    FROM made
    """
)


async def _streamed(settings: Settings, org: uuid.UUID, tasks: int) -> dict[str, Any]:
    engine = create_engine(settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            gc.collect()
            tracemalloc.start()
            started = time.perf_counter()
            lines = written = 0
            async for line in export_lines(
                session=session,
                organisation_id=org,
                start=START,
                end=START + timedelta(seconds=tasks + 1),
                volunteer_names=True,
            ):
                lines += 1
                written += len(line)
            seconds = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    finally:
        await engine.dispose()
    return {"rows": lines - 1, "bytes": written, "seconds": seconds, "peak_mb": peak / 1e6}


async def _materialised(settings: Settings, org: uuid.UUID, tasks: int) -> dict[str, Any]:
    engine = create_engine(settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            gc.collect()
            tracemalloc.start()
            legs = [
                leg
                async for leg in export_legs(
                    session, organisation_id=org, start=START, end=START + timedelta(seconds=tasks + 1)
                )
            ]
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows = len(legs)
            del legs
    finally:
        await engine.dispose()
    return {"rows": rows, "peak_mb": peak / 1e6}


async def measure_async(settings: Settings, *, tasks: int, small: int) -> dict[str, Any]:
    engine = create_engine(settings, pool_size=1)
    org = uuid.uuid4()
    try:
        async with engine.begin() as connection:
            await connection.execute(_FILL, {"org": org, "start": START, "n": tasks})
            await connection.execute(text("ANALYZE intake.tasks"))
            await connection.execute(text("ANALYZE intake.legs"))
    finally:
        await engine.dispose()
    streamed_small = await _streamed(settings, org, small)
    streamed_all = await _streamed(settings, org, tasks)
    materialised = await _materialised(settings, org, tasks)
    return {
        "tasks": tasks,
        "small": small,
        "streamed": {str(small): streamed_small, str(tasks): streamed_all},
        "materialised": materialised,
        "rows_per_s": streamed_all["rows"] / streamed_all["seconds"],
        "ratio_100k_vs_10k": streamed_all["peak_mb"] / streamed_small["peak_mb"],
        "ratio_streamed_vs_materialised": streamed_all["peak_mb"] / materialised["peak_mb"],
        "target_ratio_100k_vs_10k": 1.5,
    }


def measure(*, tasks: int = 100_000, small: int = 10_000) -> dict[str, Any]:
    stack = EmbeddedStack()
    stack.postgres.start()
    try:
        settings = Settings(database_url=stack.database_url)
        upgrade(settings)
        return asyncio.run(measure_async(settings, tasks=tasks, small=small))
    finally:
        stack.postgres.stop()
        shutil.rmtree(stack.base_dir, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
