"""Intake's read model: dispatch events folded in batches against one event at a time (same run).

Every dispatch event (an offer, an assignment, ...) is folded into its task's row, its legs and its
timeline by intake's read-model consumer. The consumer hands a fetched run of them to
`apply_progress_batch` in one call; without a batch handler it would call `apply_progress` for
each, in the same transaction, flushing and clearing the session between them (as it does for
handlers without one). Both are measured here on the embedded PostgreSQL, on two sets of the same
tasks with the same events in the same order: the offers and assignments of both legs of each task,
as a partition carries them (the offers of many tasks, then their assignments), taken `batch` at a
time as the consumer takes what it fetched.

Figures: events per second, this process's CPU time per event and the database backend's, for each
way, and their ratios; and whether both left the same read model (they must).

Run: `.venv/bin/python -m bench.progress_fold [--tasks 1000] [--batch 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.location_fleet import cpu_s
from errands.migrate import upgrade
from errands.stack import EmbeddedStack
from services.intake.entrypoints.schemas import TaskIn
from services.intake.service_layer.progress import apply_progress, apply_progress_batch
from services.intake.service_layer.submission import Keys, submit_task
from services.intake.service_layer.tasks import get_task
from shared.db import create_engine, create_sessionmaker
from shared.events import CloudEvent, LegAssigned, LegOffered, build_event
from shared.settings import Settings

KEYS = Keys(code_key=b"bench-code-key", data_key=b"b" * 32)
BODY = {
    "kind": "errand",
    "priority": "routine",
    "pickup": {"lat": 29.87, "lon": 121.55, "address": "Pharmacy"},
    "dropoffs": [
        {"lat": 29.88, "lon": 121.56, "address": "Home 1", "recipient_name": "A", "recipient_phone": "+86 1"},
        {"lat": 29.86, "lon": 121.54, "address": "Home 2", "recipient_name": "B", "recipient_phone": "+86 2"},
    ],
}

Fold = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]


async def one_at_a_time(session: AsyncSession, events: list[CloudEvent]) -> None:
    """The consumer's way with a handler and no batch handler: each event alone, the session cleared."""
    for event in events:
        await apply_progress(session, event)
        await session.flush()
        session.expunge_all()


async def _tasks(
    sessionmaker: async_sessionmaker[AsyncSession], org: uuid.UUID, n: int
) -> list[dict[str, Any]]:
    tasks = []
    for _ in range(n):
        async with sessionmaker() as session, session.begin():
            submission = await submit_task(
                session=session,
                organisation_id=org,
                idempotency_key=str(uuid.uuid4()),
                body=TaskIn.model_validate(BODY),
                keys=KEYS,
            )
        tasks.append(submission.task)
    return tasks


def _events(tasks: list[dict[str, Any]]) -> list[CloudEvent]:
    """Both legs of each task offered, then assigned, as a partition carries them."""
    volunteer = uuid.uuid4()
    expires = datetime.now(UTC) + timedelta(minutes=2)
    offers = [
        (
            t["id"],
            LegOffered(
                task_id=t["id"],
                leg_id=leg["id"],
                offer_id=uuid.uuid4(),
                volunteer_id=volunteer,
                expires_at=expires,
            ),
        )
        for t in tasks
        for leg in t["legs"]
    ]
    assignments = [
        (t["id"], LegAssigned(task_id=t["id"], leg_id=leg["id"], volunteer_id=volunteer, volunteer_name="Li"))
        for t in tasks
        for leg in t["legs"]
    ]
    return [
        build_event(data, source="/dispatcher", subject=task_id)[1]
        for task_id, data in [*offers, *assignments]
    ]


async def _fold_all(
    sessionmaker: async_sessionmaker[AsyncSession], fold: Fold, events: list[CloudEvent], batch: int
) -> dict[str, float]:
    async with sessionmaker() as session:
        backend = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        await session.commit()  # one connection in the pool: every batch runs on this backend
        backend_before, cpu_before, started = cpu_s(backend), time.process_time(), time.perf_counter()
        for i in range(0, len(events), batch):
            async with session.begin():
                await fold(session, events[i : i + batch])
                await session.flush()
            session.expunge_all()
        seconds = time.perf_counter() - started
        cpu, backend_cpu = time.process_time() - cpu_before, cpu_s(backend) - backend_before
    return {
        "events_per_s": len(events) / seconds,
        "cpu_ms_per_event": 1000 * cpu / len(events),
        "database_cpu_ms_per_event": 1000 * backend_cpu / len(events),
    }


async def _read_models(
    sessionmaker: async_sessionmaker[AsyncSession], org: uuid.UUID, tasks: list[dict[str, Any]]
) -> list[Any]:
    models = []
    async with sessionmaker() as session:
        for t in tasks:
            view = await get_task(session=session, task_id=uuid.UUID(t["id"]), organisation_id=org)
            models.append(
                (
                    view["status"],
                    sorted(view["transitions"]),
                    [(leg["status"], sorted(leg["transitions"])) for leg in view["legs"]],
                    [entry["type"] for entry in view["timeline"]],
                )
            )
    return models


async def measure_async(settings: Settings, *, tasks: int, batch: int) -> dict[str, Any]:
    engine = create_engine(settings, pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    try:
        org = uuid.uuid4()
        alone, together = await _tasks(sessionmaker, org, tasks), await _tasks(sessionmaker, org, tasks)
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE intake.tasks"))
            await connection.execute(text("ANALYZE intake.legs"))
        baseline = await _fold_all(sessionmaker, one_at_a_time, _events(alone), batch)
        batched = await _fold_all(sessionmaker, apply_progress_batch, _events(together), batch)
        same = await _read_models(sessionmaker, org, alone) == await _read_models(sessionmaker, org, together)
    finally:
        await engine.dispose()
    return {
        "tasks": tasks,
        "events": 4 * tasks,
        "batch": batch,
        "one_at_a_time": baseline,
        "batched": batched,
        "ratio_events_per_s": batched["events_per_s"] / baseline["events_per_s"],
        "ratio_cpu_per_event": batched["cpu_ms_per_event"] / baseline["cpu_ms_per_event"],
        "ratio_database_cpu_per_event": batched["database_cpu_ms_per_event"]
        / max(baseline["database_cpu_ms_per_event"], 1e-9),
        "same_read_model": same,
    }


def measure(*, tasks: int = 1000, batch: int = 50) -> dict[str, Any]:
    stack = EmbeddedStack()
    stack.postgres.start()
    try:
        settings = Settings(database_url=stack.database_url)
        upgrade(settings)
        return asyncio.run(measure_async(settings, tasks=tasks, batch=batch))
    finally:
        stack.postgres.stop()
        shutil.rmtree(stack.base_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(measure(tasks=args.tasks, batch=args.batch), indent=2))


if __name__ == "__main__":
    main()
