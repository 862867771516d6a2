"""Intake's use cases: submit a task exactly once, read it, and keep its read model current."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy import event as orm_event
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from services.intake.adapters.tables import IdempotencyRow, LegRow, TaskRow, TimelineRow, outbox
from services.intake.domain.model import (
    ListPosition,
    TaskIn,
    TaskListQuery,
    cancellation,
    history_after,
    leg_stage_of,
    leg_status_after,
    leg_status_on_cancel,
    task_stage_of,
    task_status_after,
)
from services.intake.domain.timings import TimingObservation, timings_completed
from shared import crypto
from shared.consumer import PermanentError
from shared.db import is_connection_error, snapshot_xmin
from shared.events import (
    CloudEvent,
    DropoffData,
    ItemData,
    PickupData,
    RequirementsData,
    SubmittedLeg,
    TaskCancelled,
    TaskSubmitted,
    build_event,
)
from shared.http import ProblemError
from shared.metrics import DISPATCH_TIMINGS
from shared.outbox import add_events, event_row, insert_event_sql


@dataclass(frozen=True)
class Keys:
    code_key: bytes
    data_key: bytes


def _request_hash(request_json: str) -> str:
    return hashlib.sha256(request_json.encode()).hexdigest()


def _with_codes(response: dict[str, Any], keys: Keys) -> dict[str, Any]:
    legs = [
        {**leg, "confirmation_code": crypto.confirmation_code(keys.code_key, uuid.UUID(leg["id"]))}
        for leg in response["legs"]
    ]
    return {**response, "legs": legs}


def _submitted_event(
    task_id: uuid.UUID,
    organisation_id: uuid.UUID,
    body: TaskIn,
    legs: list[tuple[uuid.UUID, str]],
    keys: Keys,
) -> tuple[str, CloudEvent]:
    pickup = body.pickup
    data = TaskSubmitted(
        task_id=task_id,
        organisation_id=organisation_id,
        kind=body.kind,
        priority=body.priority,
        pickup=PickupData(
            lat=pickup.lat,
            lon=pickup.lon,
            address=pickup.address,
            contact_name_masked=crypto.mask_name(pickup.contact_name),
            contact_phone_masked=crypto.mask_phone(pickup.contact_phone),
            contact_sealed=crypto.seal(
                keys.data_key, {"name": pickup.contact_name, "phone": pickup.contact_phone}
            )
            if pickup.contact_name or pickup.contact_phone
            else None,
            ready_at=pickup.ready_at,
        ),
        legs=[
            SubmittedLeg(
                leg_id=leg_id,
                index=index,
                code_hash=code_hash,
                dropoff=DropoffData(
                    lat=drop.lat,
                    lon=drop.lon,
                    address=drop.address,
                    recipient_name_masked=crypto.mask_name(drop.recipient_name),
                    recipient_phone_masked=crypto.mask_phone(drop.recipient_phone),
                    recipient_email_masked=crypto.mask_email(drop.recipient_email),
                    recipient_sealed=crypto.seal(
                        keys.data_key,
                        {
                            "name": drop.recipient_name,
                            "phone": drop.recipient_phone,
                            "email": drop.recipient_email,
                        },
                    ),
                    language=drop.language,
                    no_contact=drop.no_contact,
                    vulnerable=drop.vulnerable,
                    notes=drop.notes,
                ),
            )
            for index, ((leg_id, code_hash), drop) in enumerate(zip(legs, body.dropoffs, strict=True))
        ],
        items=[ItemData(**item.model_dump()) for item in body.items],
        requirements=RequirementsData(**body.requirements.model_dump()),
        deliver_by=body.deliver_by,
        callback_url=body.callback_url,
        external_ref=body.external_ref,
    )
    return build_event(data, source="/intake", subject=task_id)


def idempotency_lock_id(organisation_id: uuid.UUID, idempotency_key: str) -> int:
    """The transaction-level advisory lock held while a request with this key is in flight."""
    digest = hashlib.sha256(f"{organisation_id}:{idempotency_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Submission:
    task: dict[str, Any]
    replayed: bool


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


async def submit_task(
    *,
    session: AsyncSession | AsyncConnection,
    organisation_id: uuid.UUID,
    idempotency_key: str,
    body: TaskIn,
    keys: Keys,
) -> Submission:
    """Store a task, its legs, the idempotency record and `task.submitted` in one transaction.

    The write is one statement, so on an autocommit connection it is one round trip and its own
    transaction; inside a caller's transaction it behaves the same.

    The same key with the same body answers what the first request answered; with another
    body it is a 422; while the first request with that key is still running it is a 409.
    """
    request_json = body.model_dump_json()
    request_hash = _request_hash(request_json)
    now = datetime.now(UTC)
    task_id = uuid.uuid4()
    leg_ids = [uuid.uuid4() for _ in body.dropoffs]
    hashes = [
        crypto.code_hash(keys.code_key, leg_id, crypto.confirmation_code(keys.code_key, leg_id))
        for leg_id in leg_ids
    ]
    response = {
        "id": str(task_id),
        "status": "submitted",
        "kind": body.kind,
        "priority": body.priority,
        "created_at": now.isoformat(),
        "deliver_by": body.deliver_by.isoformat() if body.deliver_by else None,
        "external_ref": body.external_ref,
        "legs": [{"id": str(leg_id), "index": i, "status": "pending"} for i, leg_id in enumerate(leg_ids)],
    }
    topic, event = _submitted_event(
        task_id, organisation_id, body, list(zip(leg_ids, hashes, strict=True)), keys
    )
    async with _driver_connection(session) as driver:
        outcome = await driver.fetchrow(
            _SUBMIT,
            idempotency_lock_id(organisation_id, idempotency_key),
            organisation_id,
            idempotency_key,
            request_hash,
            task_id,
            json.dumps(response),
            body.kind,
            body.priority,
            request_json,
            json.dumps({"submitted": now.isoformat()}),
            now,
            json.dumps({"pending": now.isoformat()}),
            json.dumps(
                [
                    {"id": str(leg_id), "index": i, "code_hash": code_hash}
                    for i, (leg_id, code_hash) in enumerate(zip(leg_ids, hashes, strict=True))
                ]
            ),
            *event_row(topic, event),
        )
    if not outcome["locked"]:
        raise ProblemError(409, "Conflict", "A request with this Idempotency-Key is still being processed.")
    if outcome["tasks"] == 1:
        return Submission(_with_codes(response, keys), replayed=False)
    previous = (
        await session.execute(
            select(IdempotencyRow.request_hash, IdempotencyRow.response).where(
                IdempotencyRow.organisation_id == organisation_id, IdempotencyRow.key == idempotency_key
            )
        )
    ).one()
    if previous.request_hash != request_hash:
        raise ProblemError(
            422,
            "Idempotency key reused",
            "This Idempotency-Key was used with a different request body.",
            errors=[{"field": "header:Idempotency-Key", "message": "already used with another body"}],
        )
    return Submission(_with_codes(previous.response, keys), replayed=True)


async def purge_idempotency_keys(*, session: AsyncSession, retention_s: float) -> int:
    """Forget idempotency records older than `retention_s` (by the database clock); returns how many."""
    result = await session.execute(
        delete(IdempotencyRow)
        .where(IdempotencyRow.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s))
        .returning(IdempotencyRow.key)
    )
    return len(result.all())


async def get_task(
    *, session: AsyncSession, task_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> dict[str, Any]:
    """A task with its legs and timeline; another organisation's task is indistinguishable from none."""
    query = select(TaskRow).where(TaskRow.id == task_id)
    if organisation_id is not None:
        query = query.where(TaskRow.organisation_id == organisation_id)
    task = (await session.execute(query)).scalar_one_or_none()
    if task is None:
        raise ProblemError(404, "Not found", "No such task.")
    legs = (
        await session.execute(select(LegRow).where(LegRow.task_id == task_id).order_by(LegRow.index))
    ).scalars()
    timeline = (
        await session.execute(
            select(TimelineRow).where(TimelineRow.task_id == task_id).order_by(TimelineRow.time)
        )
    ).scalars()
    return {
        "id": str(task.id),
        "status": task.status,
        "kind": task.kind,
        "priority": task.priority,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "deliver_by": task.request.get("deliver_by"),
        "external_ref": task.request.get("external_ref"),
        "pickup": task.request["pickup"],
        "items": task.request["items"],
        "transitions": task.transitions,
        "legs": [
            {
                "id": str(leg.id),
                "index": leg.index,
                "status": leg.status,
                "dropoff": task.request["dropoffs"][leg.index],
                "volunteer": _volunteer(leg.volunteer_id, leg.volunteer_name),
                "transitions": leg.transitions,
            }
            for leg in legs
        ],
        "timeline": [
            {
                "type": row.type,
                "time": row.time.isoformat(),
                "leg_id": str(row.leg_id) if row.leg_id else None,
            }
            for row in timeline
        ],
    }


def _volunteer(leg_volunteer_id: uuid.UUID | None, name: str | None) -> dict[str, Any] | None:
    return {"id": str(leg_volunteer_id), "name": name} if leg_volunteer_id else None


# Tasks written by transactions older than every running one: no task can still appear before them.
_SETTLED = TaskRow.xid < snapshot_xmin()


async def list_tasks(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID | None,
    query: TaskListQuery,
    after: ListPosition | None,
) -> dict[str, Any]:
    """A page of task summaries in arrival order; `organisation_id=None` reads every organisation."""
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
    if query.status is not None:
        statement = statement.where(TaskRow.status == query.status)
    if query.kind is not None:
        statement = statement.where(TaskRow.kind == query.kind)
    if query.priority is not None:
        statement = statement.where(TaskRow.priority == query.priority)
    if after is not None:
        statement = statement.where(tuple_(TaskRow.xid, TaskRow.seq) > tuple_(after.xid, after.seq))
    rows = (await session.execute(statement.order_by(TaskRow.xid, TaskRow.seq).limit(query.limit + 1))).all()
    page, more = rows[: query.limit], len(rows) > query.limit
    end = ListPosition(page[-1].xid, page[-1].seq) if page else after
    legs_of: dict[uuid.UUID, list[dict[str, Any]]] = {row.id: [] for row in page}
    if page:
        legs = await session.execute(
            select(
                LegRow.task_id,
                LegRow.id,
                LegRow.index,
                LegRow.status,
                LegRow.volunteer_id,
                LegRow.volunteer_name,
            )
            .where(LegRow.task_id.in_(list(legs_of)))
            .order_by(LegRow.task_id, LegRow.index)
        )
        for leg in legs:
            legs_of[leg.task_id].append(
                {
                    "id": str(leg.id),
                    "index": leg.index,
                    "status": leg.status,
                    "volunteer": _volunteer(leg.volunteer_id, leg.volunteer_name),
                }
            )
    return {
        "items": [
            {
                "id": str(row.id),
                "status": row.status,
                "kind": row.kind,
                "priority": row.priority,
                "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat(),
                "deliver_by": row.deliver_by,
                "external_ref": row.external_ref,
                "legs": legs_of[row.id],
            }
            for row in page
        ],
        # Always where this page ended (or began, when empty), so a client can come back for tasks
        # that arrive later; `has_more` says whether to ask again at once.
        "next_cursor": end.encode() if end is not None else None,
        "has_more": more,
    }


async def cancel_task(
    *, session: AsyncSession, task_id: uuid.UUID, organisation_id: uuid.UUID, reason: str | None
) -> dict[str, Any]:
    """Cancel a task of `organisation_id` and publish `task.cancelled`; cancelling again changes nothing."""
    task = (
        await session.execute(
            select(TaskRow.status, TaskRow.transitions)
            .where(TaskRow.id == task_id, TaskRow.organisation_id == organisation_id)
            .with_for_update()
        )
    ).one_or_none()
    if task is None:
        raise ProblemError(404, "Not found", "No such task.")
    legs = (
        await session.execute(
            select(LegRow.id, LegRow.status, LegRow.transitions).where(LegRow.task_id == task_id)
        )
    ).all()
    decision = cancellation(task.status, [leg.status for leg in legs])
    if decision == "completed":
        raise ProblemError(409, "Conflict", "The task is already completed and can no longer be cancelled.")
    if decision == "cancel":
        now = datetime.now(UTC)
        await session.execute(
            update(TaskRow)
            .where(TaskRow.id == task_id)
            .values(
                status="cancelled",
                transitions={**task.transitions, "cancelled": now.isoformat()},
                updated_at=now,
            )
        )
        for leg in legs:
            status = leg_status_on_cancel(leg.status)
            if status != leg.status:
                await session.execute(
                    update(LegRow)
                    .where(LegRow.id == leg.id)
                    .values(
                        status=status,
                        transitions={**leg.transitions, status: now.isoformat()},
                        updated_at=now,
                    )
                )
        topic, event = build_event(
            TaskCancelled(task_id=task_id, organisation_id=organisation_id, reason=reason),
            source="/intake",
            subject=task_id,
        )
        await session.execute(
            insert(TimelineRow).values(
                event_id=event.id, task_id=task_id, type=event.type, time=event.time, leg_id=None, data={}
            )
        )
        await add_events(session, outbox, [(topic, event)])
    return await get_task(session=session, task_id=task_id, organisation_id=organisation_id)


async def apply_progress(session: AsyncSession, event: CloudEvent) -> None:
    """Fold a dispatch or confirmation event into the task's read model and timeline."""
    task_id = uuid.UUID(event.subject)
    task = (
        await session.execute(select(TaskRow).where(TaskRow.id == task_id).with_for_update())
    ).scalar_one_or_none()
    if task is None:
        raise PermanentError(f"unknown task {task_id}")
    leg_id_raw = event.data.get("leg_id")
    leg_id = uuid.UUID(leg_id_raw) if isinstance(leg_id_raw, str) else None
    moment = event.time.isoformat()
    await session.execute(
        insert(TimelineRow)
        .values(event_id=event.id, task_id=task_id, type=event.type, time=event.time, leg_id=leg_id, data={})
        .on_conflict_do_nothing()
    )
    legs = list((await session.execute(select(LegRow).where(LegRow.task_id == task_id))).scalars())
    if leg_id is not None:
        leg = next((leg for leg in legs if leg.id == leg_id), None)
        if leg is None:
            raise PermanentError(f"leg {leg_id} is not part of task {task_id}")
        status = leg_status_after(leg.status, event.type)
        history = history_after(
            leg.transitions, before=leg.status, after=status, stage=leg_stage_of(event.type), at=moment
        )
        for reached in history.keys() - leg.transitions.keys():
            _observe_after_commit(
                session,
                task.priority,
                timings_completed(
                    transitions_before=leg.transitions,
                    reached=reached,
                    at=event.time,
                    submitted_at=task.created_at,
                ),
            )
        values: dict[str, Any] = {}
        if history != leg.transitions:
            values["transitions"] = history
        if status != leg.status:
            values |= {"status": status, "updated_at": event.time}
            leg.status = status
        if event.type == "leg.assigned" and status != "cancelled":
            values["volunteer_id"] = uuid.UUID(event.data["volunteer_id"])
            values["volunteer_name"] = event.data.get("volunteer_name") or event.data.get(
                "volunteer_name_masked"
            )
        elif status == "pending" and leg.volunteer_id is not None:
            values["volunteer_id"] = None
            values["volunteer_name"] = None
        if values:
            await session.execute(update(LegRow).where(LegRow.id == leg_id).values(**values))
    task_status = task_status_after(task.status, [leg.status for leg in legs], event.type)
    history = history_after(
        task.transitions, before=task.status, after=task_status, stage=task_stage_of(event.type), at=moment
    )
    task_values: dict[str, Any] = {}
    if history != task.transitions:
        task_values["transitions"] = history
    if task_status != task.status:
        task_values |= {"status": task_status, "updated_at": event.time}
    if task_values:
        await session.execute(update(TaskRow).where(TaskRow.id == task_id).values(**task_values))


_PENDING_TIMINGS = "intake.pending_dispatch_timings"


def _observe_after_commit(
    session: AsyncSession, priority: str, observations: list[TimingObservation]
) -> None:
    """Observe the dispatch timing histograms once this transaction commits, and never if it rolls back.

    A handler that fails and is retried must not count its first attempt.
    """
    if not observations:
        return
    sync_session = session.sync_session
    pending: list[tuple[str, TimingObservation]] | None = sync_session.info.get(_PENDING_TIMINGS)
    if pending is None:
        pending = sync_session.info[_PENDING_TIMINGS] = []
        orm_event.listen(sync_session, "after_commit", _observe_pending)
        orm_event.listen(sync_session, "after_rollback", _forget_pending)
    pending.extend((priority, observation) for observation in observations)


def _observe_pending(sync_session: Session) -> None:
    pending = sync_session.info.get(_PENDING_TIMINGS) or []
    for priority, observation in pending:
        DISPATCH_TIMINGS[observation.timing.name].labels(priority).observe(observation.seconds)
    pending.clear()


def _forget_pending(sync_session: Session) -> None:
    (sync_session.info.get(_PENDING_TIMINGS) or []).clear()
