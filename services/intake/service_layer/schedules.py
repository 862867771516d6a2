"""Recurring deliveries: keeping schedules, and making each occurrence into a task exactly once.

The runner locks due schedules (`FOR UPDATE SKIP LOCKED`: replicas share them out), records each due
occurrence under its unique key (schedule, occurrence) and submits its task in the same transaction,
with an idempotency key derived from that pair. A second replica, a retry or a restart finds the
occurrence recorded and makes nothing; the schedule's cursor moves past it in that same transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.repository import SqlSchedules
from services.intake.adapters.tables import ScheduleRow
from services.intake.domain.errors import ScheduleEnded, ScheduleNotFound, ScheduleRuleInvalid
from services.intake.domain.schedules import Recurrence, RuleError
from services.intake.entrypoints.schemas import ScheduleIn, ScheduleListQuery, SchedulePatchIn, TaskIn
from services.intake.service_layer import submission
from services.intake.service_layer.register import Locator, RegisterKeys
from shared.errors import DomainError

# How many next occurrences a preview and a schedule show.
PREVIEW_COUNT = 10
SHOWN_COUNT = 5
MADE_SHOWN = 10
# At most this many occurrences of one schedule per run (the rest follow in the next run at once).
PER_RUN = 100


def occurrence_key(schedule_id: uuid.UUID, at: datetime) -> str:
    """The task's idempotency key: one per schedule and occurrence, whoever submits it."""
    return f"schedule:{schedule_id}:{at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


async def checked(recurrence: Recurrence) -> Recurrence:
    """The recurrence, or ScheduleRuleInvalid naming the field; checked off the event loop (a rule that
    never matches costs seconds of CPU to find out)."""
    try:
        await asyncio.to_thread(recurrence.check)
    except RuleError as exc:
        raise ScheduleRuleInvalid(exc.field, exc.message) from exc
    return recurrence


def _recurrence(row: ScheduleRow) -> Recurrence:
    return Recurrence(row.rrule, row.dtstart, row.time_zone, frozenset(row.skipped_dates))


def occurrences_out(recurrence: Recurrence, at: list[datetime]) -> list[dict[str, Any]]:
    return [{"at": when, "local": recurrence.local(when)} for when in at]


async def preview(body: ScheduleIn, *, default_zone: str, now: datetime | None = None) -> dict[str, Any]:
    """The next occurrences the body would make, from now (or its start, if later); nothing is saved."""
    recurrence = await checked(Recurrence(body.rrule, body.dtstart, body.time_zone or default_zone))
    after = now or datetime.now(UTC)
    return {
        "time_zone": recurrence.time_zone,
        "occurrences": occurrences_out(recurrence, recurrence.next(after, PREVIEW_COUNT)),
    }


async def schedule_out(session: AsyncSession, row: ScheduleRow) -> dict[str, Any]:
    recurrence = _recurrence(row)
    upcoming = recurrence.next(row.cursor_at, SHOWN_COUNT) if row.status != "ended" else []
    made = await SqlSchedules(session).occurrences(row.organisation_id, row.id, MADE_SHOWN)
    return {
        "id": row.id,
        "name": row.name,
        "rrule": row.rrule,
        "dtstart": row.dtstart.isoformat(),
        "time_zone": row.time_zone,
        "status": row.status,
        "skipped_dates": sorted(row.skipped_dates),
        "task": row.task,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "ended_at": row.ended_at,
        "next_occurrences": occurrences_out(recurrence, upcoming),
        "made": [{"at": m.occurrence_at, "task_id": m.task_id, "error": m.error} for m in made],
    }


def _next_at(row: ScheduleRow) -> datetime | None:
    if row.status != "active":
        return None
    following = _recurrence(row).next(row.cursor_at, 1)
    return following[0] if following else None


def _template(task: TaskIn) -> dict[str, Any]:
    return task.model_dump(mode="json", exclude_none=True, exclude={"deliver_by"})


async def create(
    *, session: AsyncSession, organisation_id: uuid.UUID, body: ScheduleIn, default_zone: str
) -> dict[str, Any]:
    """Save a schedule; its first task is made for the first occurrence after now."""
    recurrence = await checked(Recurrence(body.rrule, body.dtstart, body.time_zone or default_zone))
    now = datetime.now(UTC)
    row = ScheduleRow(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        name=body.name,
        rrule=recurrence.rule,
        dtstart=body.dtstart,
        time_zone=recurrence.time_zone,
        task=_template(body.task),
        status="active",
        skipped_dates=[],
        cursor_at=now,
    )
    row.next_occurrence_at = _next_at(row)
    row = await SqlSchedules(session).add(**{c: getattr(row, c) for c in _COLUMNS})
    return await schedule_out(session, row)


_COLUMNS = (
    "id",
    "organisation_id",
    "name",
    "rrule",
    "dtstart",
    "time_zone",
    "task",
    "status",
    "skipped_dates",
    "cursor_at",
    "next_occurrence_at",
)


async def _own(
    session: AsyncSession, organisation_id: uuid.UUID, schedule_id: uuid.UUID, *, lock: bool = False
) -> ScheduleRow:
    row = await SqlSchedules(session).get(organisation_id, schedule_id, lock=lock)
    if row is None:
        raise ScheduleNotFound()
    return row


async def get(*, session: AsyncSession, organisation_id: uuid.UUID, schedule_id: uuid.UUID) -> dict[str, Any]:
    return await schedule_out(session, await _own(session, organisation_id, schedule_id))


async def list_schedules(
    *, session: AsyncSession, organisation_id: uuid.UUID, query: ScheduleListQuery
) -> dict[str, Any]:
    rows = await SqlSchedules(session).page(organisation_id, after=query.cursor, limit=query.limit + 1)
    page, more = rows[: query.limit], len(rows) > query.limit
    return {
        "items": [await schedule_out(session, row) for row in page],
        "next_cursor": str(page[-1].id) if more else None,
        "has_more": more,
    }


async def _changed(session: AsyncSession, row: ScheduleRow) -> dict[str, Any]:
    row.next_occurrence_at = _next_at(row)
    row.updated_at = func.now()
    await session.flush()
    await session.refresh(row)
    return await schedule_out(session, row)


def _not_ended(row: ScheduleRow) -> None:
    if row.status == "ended":
        raise ScheduleEnded()


async def update(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    schedule_id: uuid.UUID,
    body: SchedulePatchIn,
) -> dict[str, Any]:
    """Change the schedule for the occurrences after its cursor: tasks already made stay as they are."""
    row = await _own(session, organisation_id, schedule_id, lock=True)
    _not_ended(row)
    recurrence = await checked(
        Recurrence(
            body.rrule if body.rrule is not None else row.rrule,
            body.dtstart if body.dtstart is not None else row.dtstart,
            body.time_zone if body.time_zone is not None else row.time_zone,
        )
    )
    row.rrule, row.dtstart, row.time_zone = recurrence.rule, recurrence.dtstart, recurrence.time_zone
    if body.name is not None:
        row.name = body.name
    if body.task is not None:
        row.task = _template(body.task)
    return await _changed(session, row)


async def pause(
    *, session: AsyncSession, organisation_id: uuid.UUID, schedule_id: uuid.UUID
) -> dict[str, Any]:
    """Make no task until resumed (idempotent)."""
    row = await _own(session, organisation_id, schedule_id, lock=True)
    _not_ended(row)
    row.status = "paused"
    return await _changed(session, row)


async def resume(
    *, session: AsyncSession, organisation_id: uuid.UUID, schedule_id: uuid.UUID
) -> dict[str, Any]:
    """Make tasks again from now: occurrences that fell while paused are not made (idempotent)."""
    row = await _own(session, organisation_id, schedule_id, lock=True)
    _not_ended(row)
    if row.status == "paused":
        row.status = "active"
        row.cursor_at = max(row.cursor_at, datetime.now(UTC))
    return await _changed(session, row)


async def skip(
    *, session: AsyncSession, organisation_id: uuid.UUID, schedule_id: uuid.UUID, day: date
) -> dict[str, Any]:
    """Make no task for the occurrences on this local date (those not made yet; idempotent)."""
    row = await _own(session, organisation_id, schedule_id, lock=True)
    _not_ended(row)
    if day not in row.skipped_dates:
        row.skipped_dates = sorted([*row.skipped_dates, day])
    return await _changed(session, row)


async def end(*, session: AsyncSession, organisation_id: uuid.UUID, schedule_id: uuid.UUID) -> dict[str, Any]:
    """End the schedule for good: no more tasks (idempotent; tasks already made go on)."""
    row = await _own(session, organisation_id, schedule_id, lock=True)
    if row.status != "ended":
        row.status = "ended"
        row.ended_at = datetime.now(UTC)
    return await _changed(session, row)


# --- the runner ---------------------------------------------------------------------------------------


async def _make_task(
    session: AsyncSession,
    row: ScheduleRow,
    at: datetime,
    *,
    keys: submission.Keys,
    register_keys: RegisterKeys,
    geocoder: Locator | None,
) -> uuid.UUID:
    # deliver_by is the occurrence, set without the "in the future" check: a late run still makes it.
    body = TaskIn.model_validate(row.task).model_copy(update={"deliver_by": at})
    stops = None
    if submission.uses_register(body):
        references = await submission.load_references(
            session=session, organisation_id=row.organisation_id, body=body, keys=register_keys
        )
        stops = await submission.resolve_stops(body, references, geocoder=geocoder)
    submitted = await submission.submit_task(
        session=session,
        organisation_id=row.organisation_id,
        idempotency_key=occurrence_key(row.id, at),
        body=body,
        keys=keys,
        stops=stops,
    )
    return uuid.UUID(submitted.task["id"])


async def make_due_tasks(
    session: AsyncSession,
    *,
    keys: submission.Keys,
    register_keys: RegisterKeys,
    geocoder: Locator | None,
    lead_time_s: float,
    batch: int,
    now: datetime | None = None,
) -> int:
    """Make a task of every occurrence due within the lead time, in schedules another replica does not
    hold; returns how many occurrences were recorded (tasks made, or refused by the register)."""
    horizon = (now or datetime.now(UTC)) + timedelta(seconds=lead_time_s)
    schedules = SqlSchedules(session)
    made = 0
    for row in await schedules.lock_due(horizon, batch):
        due = _recurrence(row).between(row.cursor_at, horizon, limit=PER_RUN)
        for at in due:
            if not await schedules.claim_occurrence(row, at):
                continue
            task_id, error = None, None
            try:
                task_id = await _make_task(
                    session, row, at, keys=keys, register_keys=register_keys, geocoder=geocoder
                )
            except DomainError as exc:
                # An archived place, a recipient erased, no coordinates: this occurrence is recorded
                # as not made (operators see why); the next ones are tried again.
                error = str(exc)
            await schedules.settle_occurrence(row.id, at, task_id=task_id, error=error)
            made += 1
        row.cursor_at = due[-1] if len(due) == PER_RUN else horizon
        row.next_occurrence_at = _next_at(row)
    await session.flush()
    return made
