"""In-memory stand-ins for intake's repositories, so handlers' rules are tested without a database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from services.intake.adapters.repository import IdempotencyRecord, NewTask, SubmitOutcome
from services.intake.adapters.tables import LegRow, TaskRow, TimelineRow
from shared.events import CloudEvent


class FakeSubmissions:
    """Idempotency records by (organisation, key); `in_flight` keys are held by a request still running."""

    def __init__(self) -> None:
        self.records: dict[tuple[uuid.UUID, str], IdempotencyRecord] = {}
        self.stored: list[NewTask] = []
        self.in_flight: set[tuple[uuid.UUID, str]] = set()

    async def add_submitted(self, task: NewTask) -> SubmitOutcome:
        key = (task.organisation_id, task.idempotency_key)
        if key in self.in_flight:
            return SubmitOutcome(locked=False, stored=False)
        if key in self.records:
            return SubmitOutcome(locked=True, stored=False)
        self.records[key] = IdempotencyRecord(request_hash=task.request_hash, response=task.response)
        self.stored.append(task)
        return SubmitOutcome(locked=True, stored=True)

    async def idempotency_record(self, organisation_id: uuid.UUID, key: str) -> IdempotencyRecord:
        return self.records[(organisation_id, key)]


class FakeTasks:
    def __init__(self, tasks: Sequence[TaskRow] = (), legs: Sequence[LegRow] = ()) -> None:
        self.tasks = {task.id: task for task in tasks}
        self.legs_by_id = {leg.id: leg for leg in legs}
        self.timeline_rows: list[TimelineRow] = []
        self.events: list[tuple[str, CloudEvent]] = []
        self.audit: list[tuple[str, uuid.UUID, dict[str, Any]]] = []

    async def get(self, task_id: uuid.UUID, *, organisation_id: uuid.UUID | None) -> TaskRow | None:
        task = self.tasks.get(task_id)
        if task is None or (organisation_id is not None and task.organisation_id != organisation_id):
            return None
        return task

    async def lock(self, task_id: uuid.UUID, *, organisation_id: uuid.UUID | None) -> TaskRow | None:
        return await self.get(task_id, organisation_id=organisation_id)

    async def legs(self, task_id: uuid.UUID) -> list[LegRow]:
        return sorted(
            (leg for leg in self.legs_by_id.values() if leg.task_id == task_id), key=lambda leg: leg.index
        )

    async def timeline(self, task_id: uuid.UUID) -> list[TimelineRow]:
        return [row for row in self.timeline_rows if row.task_id == task_id]

    async def update_task(self, task_id: uuid.UUID, **values: Any) -> None:
        for name, value in values.items():
            setattr(self.tasks[task_id], name, value)

    async def update_leg(self, leg_id: uuid.UUID, **values: Any) -> None:
        for name, value in values.items():
            setattr(self.legs_by_id[leg_id], name, value)

    async def add_timeline(
        self,
        event: CloudEvent,
        *,
        task_id: uuid.UUID,
        leg_id: uuid.UUID | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.timeline_rows.append(
            TimelineRow(
                event_id=event.id,
                task_id=task_id,
                type=event.type,
                time=event.time,
                leg_id=leg_id,
                data=data or {},
            )
        )

    async def add_events(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        self.events.extend(events)

    async def add_audit(
        self, action: str, *, organisation_id: uuid.UUID, task_id: uuid.UUID, **detail: Any
    ) -> None:
        self.audit.append((action, task_id, detail))
