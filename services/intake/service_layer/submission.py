"""Submitting a task exactly once per idempotency key, and forgetting the keys once they are old."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.intake.adapters.repository import (
    NewTask,
    SqlSubmissions,
    Submissions,
    purge_idempotency_records,
)
from services.intake.entrypoints.schemas import TaskIn
from shared import crypto
from shared.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
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


@dataclass(frozen=True)
class Keys:
    code_key: bytes
    data_key: bytes


@dataclass(frozen=True)
class Submission:
    # The answer as the first request got it, confirmation codes included.
    task: dict[str, Any]
    replayed: bool


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
        notes=body.notes,
    )
    return build_event(data, source="/intake", subject=task_id)


async def submit_task(
    *,
    session: AsyncSession | AsyncConnection,
    organisation_id: uuid.UUID,
    idempotency_key: str,
    body: TaskIn,
    keys: Keys,
) -> Submission:
    """`submit` on a session, or on an autocommit connection where the write is its own transaction."""
    return await submit(
        SqlSubmissions(session),
        organisation_id=organisation_id,
        idempotency_key=idempotency_key,
        body=body,
        keys=keys,
    )


async def submit(
    submissions: Submissions,
    *,
    organisation_id: uuid.UUID,
    idempotency_key: str,
    body: TaskIn,
    keys: Keys,
) -> Submission:
    """Store a task, its legs, the idempotency record and `task.submitted` in one transaction.

    The same key with the same body answers what the first request answered; with another
    body it is refused (IdempotencyKeyReused); while the first request with that key is still
    running it is refused too (IdempotencyKeyInFlight).
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
    legs = list(zip(leg_ids, hashes, strict=True))
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
    outcome = await submissions.add_submitted(
        NewTask(
            task_id=task_id,
            organisation_id=organisation_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            request_json=request_json,
            response=response,
            kind=body.kind,
            priority=body.priority,
            submitted_at=now,
            legs=legs,
            event=_submitted_event(task_id, organisation_id, body, legs, keys),
        )
    )
    if not outcome.locked:
        raise IdempotencyKeyInFlight()
    if outcome.stored:
        return Submission(_with_codes(response, keys), replayed=False)
    previous = await submissions.idempotency_record(organisation_id, idempotency_key)
    if previous.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return Submission(_with_codes(previous.response, keys), replayed=True)


async def purge_idempotency_keys(*, session: AsyncSession, retention_s: float) -> int:
    """Forget idempotency records older than `retention_s` (by the database clock); returns how many."""
    return await purge_idempotency_records(session, retention_s=retention_s)
