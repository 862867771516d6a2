"""Erasing what the notifier holds of a task's people: after the retention, or when intake says so.

Its legs' sealed recipient contacts, events parked for the task, and the stored payloads of the
task's finished webhook deliveries go; the delivery reports (ids, hashes, times) stay.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.repository import Repository
from shared.events import CloudEvent, TaskPersonalDataErased, parse_data


async def erase_ended_tasks(session: AsyncSession, *, retention_s: float, batch: int) -> int:
    """One batch of the retention job; answers how many tasks it erased."""
    repository = Repository(session)
    tasks = await repository.lock_tasks_to_erase(retention_s=retention_s, limit=batch)
    for task in tasks:
        await repository.erase_task(task.id)
    return len(tasks)


async def erase_task(session: AsyncSession, event: CloudEvent) -> None:
    """`task.personal_data_erased`: an admin erased a person named in the task."""
    data = parse_data(event)
    assert isinstance(data, TaskPersonalDataErased)
    repository = Repository(session)
    task = await repository.task_for_update(data.task_id)
    if task is not None and task.organisation_id == data.organisation_id:
        await repository.erase_task(task.id)
