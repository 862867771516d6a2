"""Intake's tables as the service layer sees them: every query, its locks, and where events are queued.

The service layer asks in the domain's words (`lock`, `legs`, `add_submitted`); the statements, their
lock clauses and the outbox writes live here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import Row, delete, exists, false, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.intake.adapters.tables import (
    IdempotencyRow,
    LegRow,
    PlaceRow,
    RecipientRow,
    ScheduleOccurrenceRow,
    ScheduleRow,
    TaskRow,
    TimelineRow,
    VolunteerRow,
    outbox,
)
from services.intake.domain.model import ENDED_LEG, FINISHED_TASK, ListPosition
from shared import audit
from shared.auth import Actor, Organisation
from shared.db import is_connection_error, snapshot_xmin
from shared.events import CloudEvent
from shared.outbox import add_events, event_row, insert_event_sql

# --- submission: one statement, exactly once per idempotency key ------------------------------------


def idempotency_lock_id(organisation_id: uuid.UUID, idempotency_key: str) -> int:
    """The transaction-level advisory lock held while a request with this key is in flight."""
    digest = hashlib.sha256(f"{organisation_id}:{idempotency_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class NewTask:
    """A submitted task as it is stored: its row, its legs, the idempotency record and its event."""

    task_id: uuid.UUID
    organisation_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    request_json: str
    # The first answer without its confirmation codes, kept for replays.
    response: dict[str, Any]
    kind: str
    priority: str
    submitted_at: datetime
    # (leg id, hash of its confirmation code), in leg order.
    legs: list[tuple[uuid.UUID, str]]
    event: tuple[str, CloudEvent]
    # Recipients of the register its drop-offs name: a task counts as their activity.
    recipient_ids: tuple[uuid.UUID, ...] = ()
    # Who submitted it, for the audit row written with the task.
    actor: Actor = field(default_factory=lambda: Actor("system", None))


@dataclass(frozen=True)
class SubmitOutcome:
    # False: another request with the same key holds the lock and has not finished.
    locked: bool
    # False: the key already has a record (the task was submitted before), so nothing was written.
    stored: bool


@dataclass(frozen=True)
class IdempotencyRecord:
    request_hash: str
    response: dict[str, Any]


class Submissions(Protocol):
    async def add_submitted(self, task: NewTask) -> SubmitOutcome: ...

    async def idempotency_record(self, organisation_id: uuid.UUID, key: str) -> IdempotencyRecord: ...


# The whole write in one statement (one round trip): the advisory lock gates the idempotency
# record, whose insert gates the task, its legs and the outbox row. ON CONFLICT sees a record
# committed after this statement's snapshot, so a replay racing the first commit inserts nothing.
# It runs on the driver connection itself: this is the hottest path, and SQLAlchemy's statement
# machinery cost as much CPU as the rest of the request's database work. The outbox insert is built
# from the outbox Table, like every other outbox write.
_SUBMIT = f"""
WITH gate AS (
    SELECT pg_try_advisory_xact_lock($1::bigint) AS locked
), idem AS (
    INSERT INTO intake.idempotency_keys (organisation_id, key, request_hash, task_id, response)
    SELECT $2::uuid, $3::text, $4::text, $5::uuid, $6::jsonb
    FROM gate WHERE gate.locked
    ON CONFLICT DO NOTHING
    RETURNING task_id
), task AS (
    INSERT INTO intake.tasks
        (id, organisation_id, kind, priority, status, request, transitions, created_at, updated_at)
    SELECT idem.task_id, $2::uuid, $7::text, $8::text, 'submitted', $9::jsonb, $10::jsonb, $11, $11
    FROM idem
    RETURNING id
), legs AS (
    INSERT INTO intake.legs (id, task_id, "index", status, code_hash, transitions, updated_at)
    SELECT leg.id, task.id, leg."index", 'pending', leg.code_hash, $12::jsonb, $11
    FROM task, jsonb_to_recordset($13::jsonb) AS leg(id uuid, "index" int, code_hash text)
    RETURNING 1
), event AS (
    {insert_event_sql(outbox, first_parameter=14, source="task")}
    RETURNING 1
), used AS (
    UPDATE intake.recipients SET last_used_at = $11, active_at = greatest(active_at, $11)
    WHERE organisation_id = $2::uuid AND id = ANY($19::uuid[]) AND EXISTS (SELECT 1 FROM task)
    RETURNING 1
), audit AS (
    INSERT INTO auth.audit (organisation_id, actor_kind, actor_id, action, task_id, detail)
    SELECT $2::uuid, $20::text, $21::uuid, 'task.submitted', task.id,
           jsonb_build_object('kind', $7::text, 'priority', $8::text, 'legs', jsonb_array_length($13::jsonb))
    FROM task
    RETURNING 1
)
SELECT (SELECT locked FROM gate) AS locked,
       (SELECT count(*) FROM task) AS tasks,
       (SELECT count(*) FROM legs) AS legs,
       (SELECT count(*) FROM event) AS events
"""  # noqa: S608 (only names are formatted in; every value is a parameter)


@asynccontextmanager
async def _driver_connection(session: AsyncSession | AsyncConnection) -> AsyncIterator[Any]:
    """The asyncpg connection under a session or connection, inside whatever transaction it has.

    Used directly, the driver's errors bypass SQLAlchemy, whose pool would then hand a spent
    connection (the database restarted under it, or its protocol state is broken) to the next
    request: such a connection is invalidated here before the error goes on (a 503 upstream).
    """
    connection = await session.connection() if isinstance(session, AsyncSession) else session
    if connection.in_transaction():
        # The driver adapter sends BEGIN lazily with its first statement; make it real first.
        await connection.exec_driver_sql("SELECT 1")
    raw = await connection.get_raw_connection()
    try:
        yield raw.driver_connection
    except Exception as exc:
        if is_connection_error(exc):
            await connection.invalidate()
        raise


class SqlSubmissions:
    """Submissions on a session, or on an autocommit connection where the write is its own transaction."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self._session = session

    async def add_submitted(self, task: NewTask) -> SubmitOutcome:
        """Store the task, its legs, the idempotency record and its event, unless the key is taken."""
        submitted = task.submitted_at.isoformat()
        async with _driver_connection(self._session) as driver:
            outcome = await driver.fetchrow(
                _SUBMIT,
                idempotency_lock_id(task.organisation_id, task.idempotency_key),
                task.organisation_id,
                task.idempotency_key,
                task.request_hash,
                task.task_id,
                json.dumps(task.response),
                task.kind,
                task.priority,
                task.request_json,
                json.dumps({"submitted": submitted}),
                task.submitted_at,
                json.dumps({"pending": submitted}),
                json.dumps(
                    [
                        {"id": str(leg_id), "index": i, "code_hash": code_hash}
                        for i, (leg_id, code_hash) in enumerate(task.legs)
                    ]
                ),
                *event_row(*task.event),
                list(task.recipient_ids),
                task.actor.kind,
                task.actor.id,
            )
        return SubmitOutcome(locked=bool(outcome["locked"]), stored=outcome["tasks"] == 1)

    async def existing_record(self, organisation_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
        """The record of a key already used, if any (a replay is answered before any other work)."""
        row = (
            await self._session.execute(
                select(IdempotencyRow.request_hash, IdempotencyRow.response).where(
                    IdempotencyRow.organisation_id == organisation_id, IdempotencyRow.key == key
                )
            )
        ).one_or_none()
        return (
            None if row is None else IdempotencyRecord(request_hash=row.request_hash, response=row.response)
        )

    async def idempotency_record(self, organisation_id: uuid.UUID, key: str) -> IdempotencyRecord:
        row = (
            await self._session.execute(
                select(IdempotencyRow.request_hash, IdempotencyRow.response).where(
                    IdempotencyRow.organisation_id == organisation_id, IdempotencyRow.key == key
                )
            )
        ).one()
        return IdempotencyRecord(request_hash=row.request_hash, response=row.response)


async def purge_idempotency_records(session: AsyncSession, *, retention_s: float) -> int:
    """Delete idempotency records older than `retention_s` (by the database clock); returns how many."""
    result = await session.execute(
        delete(IdempotencyRow)
        .where(IdempotencyRow.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s))
        .returning(IdempotencyRow.key)
    )
    return len(result.all())


# --- tasks, their legs and timeline ----------------------------------------------------------------


class TimelineEntry(NamedTuple):
    """An event for a task's timeline, with what the timeline keeps of its data."""

    event: CloudEvent
    task_id: uuid.UUID
    leg_id: uuid.UUID | None
    data: dict[str, Any]


class Tasks(Protocol):
    async def get(self, task_id: uuid.UUID, *, organisation_id: uuid.UUID | None) -> TaskRow | None: ...

    async def lock(self, task_id: uuid.UUID, *, organisation_id: uuid.UUID | None) -> TaskRow | None: ...

    async def legs(self, task_id: uuid.UUID) -> list[LegRow]: ...

    async def timeline(self, task_id: uuid.UUID) -> list[TimelineRow]: ...

    async def update_task(self, task_id: uuid.UUID, **values: Any) -> None: ...

    async def update_leg(self, leg_id: uuid.UUID, **values: Any) -> None: ...

    async def add_timeline(
        self,
        event: CloudEvent,
        *,
        task_id: uuid.UUID,
        leg_id: uuid.UUID | None,
        data: dict[str, Any] | None = None,
    ) -> None: ...

    async def add_events(self, events: Sequence[tuple[str, CloudEvent]]) -> None: ...

    async def add_audit(
        self, action: str, *, organisation_id: uuid.UUID, task_id: uuid.UUID, **detail: Any
    ) -> None: ...


# Tasks written by transactions older than every running one: no task can still appear before them.
_SETTLED = TaskRow.xid < snapshot_xmin()


class SqlTasks:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _task(self, task_id: uuid.UUID, organisation_id: uuid.UUID | None) -> Any:
        query = select(TaskRow).where(TaskRow.id == task_id)
        if organisation_id is not None:
            query = query.where(TaskRow.organisation_id == organisation_id)
        return query

    async def get(self, task_id: uuid.UUID, *, organisation_id: uuid.UUID | None) -> TaskRow | None:
        """The task, when it exists and (given an organisation) belongs to that organisation."""
        found: TaskRow | None = (
            await self._session.execute(self._task(task_id, organisation_id))
        ).scalar_one_or_none()
        return found

    async def lock(self, task_id: uuid.UUID, *, organisation_id: uuid.UUID | None) -> TaskRow | None:
        """The task, locked until the transaction ends: every change to a task goes through here."""
        found: TaskRow | None = (
            await self._session.execute(self._task(task_id, organisation_id).with_for_update())
        ).scalar_one_or_none()
        return found

    async def lock_all(self, task_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, TaskRow]:
        """Those of the tasks that exist, locked until the transaction ends, in one statement.

        Taken in id order: two transactions locking overlapping sets wait for each other, never deadlock.
        """
        rows = await self._session.scalars(
            select(TaskRow).where(TaskRow.id.in_(task_ids)).order_by(TaskRow.id).with_for_update()
        )
        return {row.id: row for row in rows}

    async def legs(self, task_id: uuid.UUID) -> list[LegRow]:
        return (await self.legs_of([task_id])).get(task_id, [])

    async def legs_of(self, task_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[LegRow]]:
        """Each task's legs in order, for all the tasks in one statement."""
        found: dict[uuid.UUID, list[LegRow]] = {}
        rows = await self._session.scalars(
            select(LegRow).where(LegRow.task_id.in_(task_ids)).order_by(LegRow.task_id, LegRow.index)
        )
        for row in rows:
            found.setdefault(row.task_id, []).append(row)
        return found

    async def timeline(self, task_id: uuid.UUID) -> list[TimelineRow]:
        return list(
            (
                await self._session.execute(
                    select(TimelineRow).where(TimelineRow.task_id == task_id).order_by(TimelineRow.time)
                )
            ).scalars()
        )

    async def update_task(self, task_id: uuid.UUID, **values: Any) -> None:
        await self._session.execute(update(TaskRow).where(TaskRow.id == task_id).values(**values))

    async def update_leg(self, leg_id: uuid.UUID, **values: Any) -> None:
        await self._session.execute(update(LegRow).where(LegRow.id == leg_id).values(**values))

    async def add_timeline(
        self,
        event: CloudEvent,
        *,
        task_id: uuid.UUID,
        leg_id: uuid.UUID | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """The event on the task's timeline (`add_timelines` with one entry)."""
        await self.add_timelines([TimelineEntry(event, task_id, leg_id, data or {})])

    async def add_timelines(self, entries: Sequence[TimelineEntry]) -> None:
        """Events on their tasks' timelines, in one statement, each once however often it arrives, with
        what the read model keeps of its data (`data`: none of the personal data, only what the task's
        view shows) and who caused it (the event's `actor`, `person:<id>` or `volunteer:<id>`; none for
        the system)."""
        if not entries:
            return
        await self._session.execute(
            insert(TimelineRow).on_conflict_do_nothing(),
            [
                {
                    "event_id": entry.event.id,
                    "task_id": entry.task_id,
                    "type": entry.event.type,
                    "time": entry.event.time,
                    "leg_id": entry.leg_id,
                    "data": {**entry.data, **({"actor": entry.event.actor} if entry.event.actor else {})},
                }
                for entry in entries
            ],
        )

    async def add_events(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        """Queue events for the outbox relay; they are published only if this transaction commits."""
        await add_events(self._session, outbox, events)

    async def add_audit(
        self, action: str, *, organisation_id: uuid.UUID, task_id: uuid.UUID, **detail: Any
    ) -> None:
        """The command on the audit trail, by the request's actor, in this transaction."""
        await audit.record(
            self._session, action, organisation_id=organisation_id, task_id=task_id, detail=detail
        )

    async def page(
        self,
        *,
        organisation_id: uuid.UUID | None,
        status: str | None,
        kind: str | None,
        priority: str | None,
        after: ListPosition | None,
        limit: int,
    ) -> list[Row[Any]]:
        """Up to `limit` settled task summaries after `after`, in (xid, seq) order."""
        statement = select(
            TaskRow.id,
            TaskRow.status,
            TaskRow.kind,
            TaskRow.priority,
            TaskRow.created_at,
            TaskRow.updated_at,
            TaskRow.request["deliver_by"].astext.label("deliver_by"),
            TaskRow.request["external_ref"].astext.label("external_ref"),
            TaskRow.xid,
            TaskRow.seq,
        ).where(_SETTLED)
        if organisation_id is not None:
            statement = statement.where(TaskRow.organisation_id == organisation_id)
        if status is not None:
            statement = statement.where(TaskRow.status == status)
        if kind is not None:
            statement = statement.where(TaskRow.kind == kind)
        if priority is not None:
            statement = statement.where(TaskRow.priority == priority)
        if after is not None:
            statement = statement.where(tuple_(TaskRow.xid, TaskRow.seq) > tuple_(after.xid, after.seq))
        return list(
            (await self._session.execute(statement.order_by(TaskRow.xid, TaskRow.seq).limit(limit))).all()
        )

    async def leg_summaries(self, task_ids: list[uuid.UUID]) -> Sequence[Row[*tuple[Any, ...]]]:
        """The legs of these tasks, each task's in leg order."""
        if not task_ids:
            return []
        return (
            await self._session.execute(
                select(
                    LegRow.task_id,
                    LegRow.id,
                    LegRow.index,
                    LegRow.status,
                    LegRow.volunteer_id,
                    LegRow.volunteer_name,
                )
                .where(LegRow.task_id.in_(task_ids))
                .order_by(LegRow.task_id, LegRow.index)
            )
        ).all()


# --- volunteers, as errands.volunteers.v1 tells of them ------------------------------------------------

_upsert_volunteer = insert(VolunteerRow)


class SqlVolunteers:
    """Each write keeps the newest fact, so a replayed or late event never moves a volunteer back in time."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def save_profile(
        self, volunteer_id: uuid.UUID, *, organisation_id: uuid.UUID, name_masked: str | None, vehicle: str
    ) -> None:
        profile = {"organisation_id": organisation_id, "name_masked": name_masked, "vehicle": vehicle}
        await self._session.execute(
            _upsert_volunteer.values(id=volunteer_id, **profile).on_conflict_do_update(
                index_elements=[VolunteerRow.id], set_={**profile, "updated_at": func.now()}
            )
        )

    async def save_duty(self, volunteer_id: uuid.UUID, *, on_duty: bool, at: datetime) -> None:
        duty = {"on_duty": on_duty, "duty_changed_at": at}
        await self._session.execute(
            _upsert_volunteer.values(id=volunteer_id, **duty).on_conflict_do_update(
                index_elements=[VolunteerRow.id],
                set_={**duty, "updated_at": func.now()},
                where=or_(VolunteerRow.duty_changed_at.is_(None), VolunteerRow.duty_changed_at <= at),
            )
        )

    async def save_location(self, volunteer_id: uuid.UUID, *, lat: float, lon: float, at: datetime) -> None:
        location = {"lat": lat, "lon": lon, "location_at": at}
        await self._session.execute(
            _upsert_volunteer.values(id=volunteer_id, **location).on_conflict_do_update(
                index_elements=[VolunteerRow.id],
                set_={**location, "updated_at": func.now()},
                where=or_(VolunteerRow.location_at.is_(None), VolunteerRow.location_at <= at),
            )
        )


# --- organisations ---------------------------------------------------------------------------------


async def organisation_exists(session: AsyncSession, organisation_id: uuid.UUID) -> bool:
    found = await session.scalar(select(Organisation.id).where(Organisation.id == organisation_id))
    return found is not None


async def add_organisation(session: AsyncSession, organisation_id: uuid.UUID, *, name: str) -> None:
    session.add(Organisation(id=organisation_id, name=name))
    await session.flush()


# --- personal data: erased once a task has ended and the retention passed, or on request -----------


def _not_erased_tasks() -> Any:
    return select(TaskRow).where(TaskRow.erased_at.is_(None))


async def lock_tasks_to_erase(session: AsyncSession, *, retention_s: float, limit: int) -> list[TaskRow]:
    """Up to `limit` ended tasks whose last change (theirs or a leg's) is older than `retention_s`.

    Locked, skipping tasks another replica's job holds, so two jobs never erase the same task.
    """
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s)
    unfinished_or_recent_leg = exists().where(
        LegRow.task_id == TaskRow.id,
        or_(LegRow.status.not_in(ENDED_LEG), LegRow.updated_at >= cutoff),
    )
    query = (
        _not_erased_tasks()
        .where(
            TaskRow.status.in_(FINISHED_TASK),
            TaskRow.updated_at < cutoff,
            ~unfinished_or_recent_leg,
        )
        .order_by(TaskRow.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars())


_PERSON_MATCH = text(
    """
    EXISTS (
        SELECT 1 FROM jsonb_array_elements(intake.tasks.request -> 'dropoffs') AS drop
        WHERE regexp_replace(drop ->> 'recipient_phone', '[^0-9]', '', 'g') = :phone
           OR lower(drop ->> 'recipient_email') = :email
    )
    OR regexp_replace(intake.tasks.request -> 'pickup' ->> 'contact_phone', '[^0-9]', '', 'g') = :phone
    """
)


async def lock_tasks_of_person(
    session: AsyncSession, *, phone: str | None, email: str | None, organisation_id: uuid.UUID | None
) -> list[TaskRow]:
    """Tasks not yet erased that name this phone (digits only) or e-mail (lower case), locked."""
    query = (
        _not_erased_tasks()
        .where(_PERSON_MATCH.bindparams(phone=phone or "", email=email or ""))
        .order_by(TaskRow.created_at)
        .with_for_update()
    )
    if organisation_id is not None:
        query = query.where(TaskRow.organisation_id == organisation_id)
    return list((await session.execute(query)).scalars())


async def leg_statuses(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    rows = await session.execute(select(LegRow.task_id, LegRow.status).where(LegRow.task_id.in_(task_ids)))
    statuses: dict[uuid.UUID, list[str]] = {task_id: [] for task_id in task_ids}
    for task_id, status in rows:
        statuses[task_id].append(status)
    return statuses


async def erase_task(session: AsyncSession, task_id: uuid.UUID, *, request: dict[str, Any]) -> None:
    """Store the task's request without its personal data (the timeline keeps none to begin with)."""
    await session.execute(
        update(TaskRow).where(TaskRow.id == task_id).values(request=request, erased_at=func.now())
    )


# --- the register of people served, and saved places --------------------------------------------------
# Every statement names the organisation: another organisation's record is never read or changed.


# A register row: a recipient or a saved place, each of one organisation.
_Owned = TypeVar("_Owned", RecipientRow, PlaceRow)


class SqlRegister:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _add(self, row: _Owned) -> _Owned:
        self._session.add(row)
        await self._session.flush()
        await self._session.refresh(row)
        return row

    async def _by_ids(
        self, table: type[_Owned], organisation_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, _Owned]:
        """These rows of the organisation, by id (another organisation's ids find nothing)."""
        if not ids:
            return {}
        rows = await self._session.execute(
            select(table).where(table.organisation_id == organisation_id, table.id.in_(ids))
        )
        return {row.id: row for row in rows.scalars()}

    async def add_recipient(self, **values: Any) -> RecipientRow:
        return await self._add(RecipientRow(**values))

    async def recipient(self, organisation_id: uuid.UUID, recipient_id: uuid.UUID) -> RecipientRow | None:
        return (await self._by_ids(RecipientRow, organisation_id, [recipient_id])).get(recipient_id)

    async def recipients(
        self, organisation_id: uuid.UUID, recipient_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, RecipientRow]:
        return await self._by_ids(RecipientRow, organisation_id, recipient_ids)

    async def recipient_page(
        self,
        organisation_id: uuid.UUID,
        *,
        after: uuid.UUID | None,
        limit: int,
        search_index: Sequence[str] | None = None,
        phone_index: str | None = None,
        email_index: str | None = None,
    ) -> list[RecipientRow]:
        """Up to `limit` recipients after `after` in id order; with a search, those matching any of:
        all the query's tokens, the phone, the e-mail."""
        statement = select(RecipientRow).where(RecipientRow.organisation_id == organisation_id)
        matches = []
        if search_index:
            matches.append(RecipientRow.search_index.contains(list(search_index)))
        if phone_index is not None:
            matches.append(RecipientRow.phone_index == phone_index)
        if email_index is not None:
            matches.append(RecipientRow.email_index == email_index)
        if search_index is not None or phone_index is not None or email_index is not None:
            statement = statement.where(or_(*matches) if matches else false())
        if after is not None:
            statement = statement.where(RecipientRow.id > after)
        return list((await self._session.execute(statement.order_by(RecipientRow.id).limit(limit))).scalars())

    async def update_recipient(
        self, organisation_id: uuid.UUID, recipient_id: uuid.UUID, **values: Any
    ) -> RecipientRow | None:
        found: RecipientRow | None = (
            await self._session.execute(
                update(RecipientRow)
                .where(RecipientRow.organisation_id == organisation_id, RecipientRow.id == recipient_id)
                .values(**values)
                .returning(RecipientRow)
            )
        ).scalar_one_or_none()
        return found

    async def renew_recipient(
        self, organisation_id: uuid.UUID, recipient_id: uuid.UUID
    ) -> RecipientRow | None:
        """Keep the recipient another retention period from now."""
        now = func.now()
        return await self.update_recipient(organisation_id, recipient_id, renewed_at=now, active_at=now)

    async def erase_recipient(self, organisation_id: uuid.UUID, recipient_id: uuid.UUID) -> bool:
        result = await self._session.execute(
            delete(RecipientRow)
            .where(RecipientRow.organisation_id == organisation_id, RecipientRow.id == recipient_id)
            .returning(RecipientRow.id)
        )
        return result.first() is not None

    async def add_place(self, **values: Any) -> PlaceRow:
        return await self._add(PlaceRow(**values))

    async def place(self, organisation_id: uuid.UUID, place_id: uuid.UUID) -> PlaceRow | None:
        return (await self._by_ids(PlaceRow, organisation_id, [place_id])).get(place_id)

    async def places(
        self, organisation_id: uuid.UUID, place_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, PlaceRow]:
        return await self._by_ids(PlaceRow, organisation_id, place_ids)

    async def place_page(
        self,
        organisation_id: uuid.UUID,
        *,
        after: uuid.UUID | None,
        limit: int,
        archived: bool,
        name: str | None = None,
    ) -> list[PlaceRow]:
        statement = select(PlaceRow).where(PlaceRow.organisation_id == organisation_id)
        if name:
            # Words of the name, each anywhere in it, case-insensitive (`%` and `_` taken literally).
            for word in name.split():
                literal = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                statement = statement.where(PlaceRow.name.ilike(f"%{literal}%", escape="\\"))
        if not archived:
            statement = statement.where(PlaceRow.archived_at.is_(None))
        if after is not None:
            statement = statement.where(PlaceRow.id > after)
        return list((await self._session.execute(statement.order_by(PlaceRow.id).limit(limit))).scalars())

    async def update_place(
        self, organisation_id: uuid.UUID, place_id: uuid.UUID, **values: Any
    ) -> PlaceRow | None:
        found: PlaceRow | None = (
            await self._session.execute(
                update(PlaceRow)
                .where(PlaceRow.organisation_id == organisation_id, PlaceRow.id == place_id)
                .values(**values)
                .returning(PlaceRow)
            )
        ).scalar_one_or_none()
        return found


async def erase_inactive_recipients(session: AsyncSession, *, retention_s: float, batch: int) -> int:
    """Delete up to `batch` recipients inactive for `retention_s` (by the database clock); how many went.

    Rows another transaction holds (being renewed, or used by a task) are skipped, not waited for.
    """
    inactive = (
        select(RecipientRow.id)
        .where(RecipientRow.active_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s))
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await session.execute(
        delete(RecipientRow)
        .where(RecipientRow.id.in_(inactive))
        .where(RecipientRow.active_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s))
        .returning(RecipientRow.id)
    )
    return len(result.all())


async def recipient_organisations(
    session: AsyncSession, organisation_id: uuid.UUID | None
) -> list[uuid.UUID]:
    """The organisations whose register may hold a person: `organisation_id`'s, or every one with a record."""
    if organisation_id is not None:
        return [organisation_id]
    return list((await session.execute(select(RecipientRow.organisation_id).distinct())).scalars())


async def erase_recipients_matching(
    session: AsyncSession, organisation_id: uuid.UUID, *, phone_index: str | None, email_index: str | None
) -> int:
    """Delete the organisation's register records with this phone's or e-mail's keyed hash; how many."""
    matches = [
        column == value
        for column, value in (
            (RecipientRow.phone_index, phone_index),
            (RecipientRow.email_index, email_index),
        )
        if value is not None
    ]
    if not matches:
        return 0
    result = await session.execute(
        delete(RecipientRow)
        .where(RecipientRow.organisation_id == organisation_id, or_(*matches))
        .returning(RecipientRow.id)
    )
    return len(result.all())


# --- schedules: every statement names the organisation, except the runner's, which takes any due one.


class SqlSchedules:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, **values: Any) -> ScheduleRow:
        row = ScheduleRow(**values)
        self._session.add(row)
        await self._session.flush()
        await self._session.refresh(row)
        return row

    async def get(
        self, organisation_id: uuid.UUID, schedule_id: uuid.UUID, *, lock: bool = False
    ) -> ScheduleRow | None:
        statement = select(ScheduleRow).where(
            ScheduleRow.organisation_id == organisation_id, ScheduleRow.id == schedule_id
        )
        if lock:
            statement = statement.with_for_update()
        found: ScheduleRow | None = (await self._session.execute(statement)).scalar_one_or_none()
        return found

    async def page(
        self, organisation_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> list[ScheduleRow]:
        statement = select(ScheduleRow).where(ScheduleRow.organisation_id == organisation_id)
        if after is not None:
            statement = statement.where(ScheduleRow.id > after)
        rows = await self._session.execute(statement.order_by(ScheduleRow.id).limit(limit))
        return list(rows.scalars())

    async def lock_due(self, due_by: datetime, limit: int) -> list[ScheduleRow]:
        """Active schedules with an occurrence due by `due_by`, locked; ones another replica holds are
        skipped (it is making them)."""
        rows = await self._session.execute(
            select(ScheduleRow)
            .where(ScheduleRow.status == "active", ScheduleRow.next_occurrence_at <= due_by)
            .order_by(ScheduleRow.next_occurrence_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    async def claim_occurrence(self, schedule: ScheduleRow, occurrence_at: datetime) -> bool:
        """Record the occurrence; False when it already was (the unique key: made once, ever)."""
        claimed = await self._session.execute(
            insert(ScheduleOccurrenceRow)
            .values(
                schedule_id=schedule.id,
                occurrence_at=occurrence_at,
                organisation_id=schedule.organisation_id,
            )
            .on_conflict_do_nothing(index_elements=["schedule_id", "occurrence_at"])
            .returning(ScheduleOccurrenceRow.schedule_id)
        )
        return claimed.first() is not None

    async def settle_occurrence(
        self, schedule_id: uuid.UUID, occurrence_at: datetime, *, task_id: uuid.UUID | None, error: str | None
    ) -> None:
        await self._session.execute(
            update(ScheduleOccurrenceRow)
            .where(
                ScheduleOccurrenceRow.schedule_id == schedule_id,
                ScheduleOccurrenceRow.occurrence_at == occurrence_at,
            )
            .values(task_id=task_id, error=error)
        )

    async def occurrences(
        self, organisation_id: uuid.UUID, schedule_id: uuid.UUID, limit: int
    ) -> list[ScheduleOccurrenceRow]:
        """The latest occurrences made, newest first."""
        rows = await self._session.execute(
            select(ScheduleOccurrenceRow)
            .where(
                ScheduleOccurrenceRow.organisation_id == organisation_id,
                ScheduleOccurrenceRow.schedule_id == schedule_id,
            )
            .order_by(ScheduleOccurrenceRow.occurrence_at.desc())
            .limit(limit)
        )
        return list(rows.scalars())
