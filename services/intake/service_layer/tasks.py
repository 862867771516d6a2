"""Intake's use cases: submit a task exactly once, read it, and keep its read model current."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.tables import IdempotencyRow, LegRow, TaskRow, TimelineRow, outbox
from services.intake.domain.model import TaskIn, leg_status_after, task_status_after
from shared import crypto
from shared.consumer import PermanentError
from shared.events import (
    CloudEvent,
    DropoffData,
    ItemData,
    PickupData,
    RequirementsData,
    SubmittedLeg,
    TaskSubmitted,
    build_event,
)
from shared.http import ProblemError
from shared.outbox import add_events


@dataclass(frozen=True)
class Keys:
    code_key: bytes
    data_key: bytes


def _request_hash(body: TaskIn) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


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


async def submit_task(
    *, session: AsyncSession, organisation_id: uuid.UUID, idempotency_key: str, body: TaskIn, keys: Keys
) -> dict[str, Any]:
    """Store a task, its legs, the idempotency record and `task.submitted` in one transaction.

    The same key with the same body answers what the first request answered; with another
    body it is a 422; while the first request with that key is still running it is a 409.
    """
    request_hash = _request_hash(body)
    lock_id = int.from_bytes(
        hashlib.sha256(f"{organisation_id}:{idempotency_key}".encode()).digest()[:8], "big", signed=True
    )
    got_lock, previous = (
        await session.execute(
            select(
                func.pg_try_advisory_xact_lock(lock_id),
                select(func.jsonb_build_array(IdempotencyRow.request_hash, IdempotencyRow.response))
                .where(
                    IdempotencyRow.organisation_id == organisation_id, IdempotencyRow.key == idempotency_key
                )
                .scalar_subquery(),
            )
        )
    ).one()
    if not got_lock:
        raise ProblemError(409, "Conflict", "A request with this Idempotency-Key is still being processed.")
    if previous is not None:
        if previous[0] != request_hash:
            raise ProblemError(
                422, "Idempotency key reused", "This Idempotency-Key was used with a different request body."
            )
        return _with_codes(previous[1], keys)

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
    stamp = {"submitted": now.isoformat()}
    await session.execute(
        insert(TaskRow).values(
            id=task_id,
            organisation_id=organisation_id,
            kind=body.kind,
            priority=body.priority,
            status="submitted",
            request=body.model_dump(mode="json"),
            transitions=stamp,
            created_at=now,
            updated_at=now,
        )
    )
    await session.execute(
        insert(LegRow),
        [
            {
                "id": leg_id,
                "task_id": task_id,
                "index": i,
                "status": "pending",
                "code_hash": code_hash,
                "transitions": {"pending": now.isoformat()},
                "updated_at": now,
            }
            for i, (leg_id, code_hash) in enumerate(zip(leg_ids, hashes, strict=True))
        ],
    )
    await session.execute(
        insert(IdempotencyRow).values(
            organisation_id=organisation_id,
            key=idempotency_key,
            request_hash=request_hash,
            task_id=task_id,
            response=response,
        )
    )
    await add_events(
        session,
        outbox,
        [_submitted_event(task_id, organisation_id, body, list(zip(leg_ids, hashes, strict=True)), keys)],
    )
    return _with_codes(response, keys)


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
                "volunteer": {"id": str(leg.volunteer_id), "name": leg.volunteer_name}
                if leg.volunteer_id
                else None,
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
        values: dict[str, Any] = {}
        if status != leg.status:
            values = {
                "status": status,
                "transitions": {**leg.transitions, status: moment},
                "updated_at": event.time,
            }
            leg.status = status
        if event.type == "leg.assigned":
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
    if task_status != task.status:
        await session.execute(
            update(TaskRow)
            .where(TaskRow.id == task_id)
            .values(
                status=task_status,
                transitions={**task.transitions, task_status: moment},
                updated_at=event.time,
            )
        )
