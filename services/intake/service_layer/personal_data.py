"""Erasing the personal data intake holds of a task: after the retention, or for one person on request.

Either way the task keeps what reports need (see `domain/personal_data.py`). An erasure on request
also publishes `task.personal_data_erased`, so the dispatcher and the notifier erase their copies at
once rather than at the end of their own retention.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters import repository
from services.intake.adapters.tables import TaskRow
from services.intake.domain.errors import PersonHasTasksInProgress
from services.intake.domain.personal_data import erase_request, has_ended
from services.intake.domain.register import normalised_email, normalised_phone
from services.intake.service_layer.register import RegisterKeys, contact_indexes
from shared import audit
from shared.events import TaskPersonalDataErased, build_event


@dataclass(frozen=True)
class Erasure:
    tasks: int
    legs: int
    fields: int
    recipients: int = 0


async def _erase(session: AsyncSession, tasks: list[TaskRow]) -> Erasure:
    legs = fields = 0
    for task in tasks:
        erased = erase_request(task.request)
        await repository.erase_task(session, task.id, request=erased.request)
        legs += len(task.request.get("dropoffs") or [])
        fields += erased.fields
    return Erasure(tasks=len(tasks), legs=legs, fields=fields)


async def erase_ended_tasks(session: AsyncSession, *, retention_s: float, batch: int) -> int:
    """One batch of the retention job: tasks over for longer than `retention_s`; answers how many."""
    tasks = await repository.lock_tasks_to_erase(session, retention_s=retention_s, limit=batch)
    return (await _erase(session, tasks)).tasks


async def erase_person(
    session: AsyncSession,
    *,
    phone: str | None,
    email: str | None,
    keys: RegisterKeys,
    organisation_id: uuid.UUID | None = None,
) -> Erasure:
    """Every task naming this phone or e-mail, and the register's records of them, erased at once;
    refused while any of those tasks is going."""
    digits, address = normalised_phone(phone), normalised_email(email)
    tasks = await repository.lock_tasks_of_person(
        session, phone=digits, email=address, organisation_id=organisation_id
    )
    statuses = await repository.leg_statuses(session, [task.id for task in tasks])
    going = [str(task.id) for task in tasks if not has_ended(task.status, statuses[task.id])]
    if going:
        raise PersonHasTasksInProgress(going)
    erasure = await _erase(session, tasks)
    await repository.SqlTasks(session).add_events(
        [
            build_event(
                TaskPersonalDataErased(task_id=task.id, organisation_id=task.organisation_id),
                source="/intake",
                subject=task.id,
            )
            for task in tasks
        ]
    )
    recipients = 0
    for scope in await repository.recipient_organisations(session, organisation_id):
        recipients += await repository.erase_recipients_matching(
            session, scope, **contact_indexes(keys, scope, phone=digits, email=address)
        )
    for task in tasks:
        await audit.record(
            session, "personal_data.erased", organisation_id=task.organisation_id, task_id=task.id
        )
    await audit.record(
        session,
        "person.erased",
        organisation_id=organisation_id,
        detail={"tasks": erasure.tasks, "recipients": recipients, "by": "phone" if digits else "email"},
    )
    return Erasure(tasks=erasure.tasks, legs=erasure.legs, fields=erasure.fields, recipients=recipients)
