"""Submitting a task exactly once per idempotency key, and forgetting the keys once they are old."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.intake.adapters.repository import (
    NewTask,
    SqlRegister,
    SqlSubmissions,
    Submissions,
    purge_idempotency_records,
)
from services.intake.domain.errors import (
    ARCHIVED_PLACE,
    UNKNOWN_PLACE,
    UNKNOWN_RECIPIENT,
    LocationMissing,
    UnknownReference,
)
from services.intake.domain.register import (
    DROPOFF_FROM_PLACE,
    DROPOFF_FROM_RECIPIENT,
    PICKUP_FROM_PLACE,
    Geocode,
    Location,
    Nowhere,
    fill_stop,
    locate,
)
from services.intake.entrypoints.schemas import DropoffIn, DropoffOut, PickupIn, PickupOut, TaskIn
from services.intake.service_layer.register import (
    Locator,
    RegisterKeys,
    find_location,
    place_out,
    recipient_details,
)
from shared import audit, crypto
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


@dataclass(frozen=True)
class Stops:
    """The task's pickup and drop-offs with every field filled: the copy the task keeps."""

    pickup: PickupOut
    dropoffs: list[DropoffOut]
    recipient_ids: tuple[uuid.UUID, ...] = ()

    @classmethod
    def as_given(cls, body: TaskIn) -> Stops:
        """The stops of a body that names no record and gives every coordinate (no copy to make)."""
        return cls(
            PickupOut.model_construct(**body.pickup.model_dump()),
            [DropoffOut.model_construct(**drop.model_dump()) for drop in body.dropoffs],
        )


@dataclass(frozen=True)
class References:
    """The register's records a body names, as they were when it was submitted."""

    places: dict[uuid.UUID, dict[str, Any]]
    recipients: dict[uuid.UUID, dict[str, Any]]


def uses_register(body: TaskIn) -> bool:
    """Whether a stop names a record or lacks coordinates: then it is filled before it is stored."""
    stops: list[Any] = [body.pickup, *body.dropoffs]
    return any(
        stop.lat is None or stop.place_id is not None or getattr(stop, "recipient_id", None) is not None
        for stop in stops
    )


async def load_references(
    *, session: AsyncSession, organisation_id: uuid.UUID, body: TaskIn, keys: RegisterKeys
) -> References:
    """The places and recipients of `organisation_id` that the body names (another's are not found)."""
    register = SqlRegister(session)
    stops: list[PickupIn | DropoffIn] = [body.pickup, *body.dropoffs]
    place_ids = {stop.place_id for stop in stops if stop.place_id is not None}
    recipient_ids = {drop.recipient_id for drop in body.dropoffs if drop.recipient_id is not None}
    places = await register.places(organisation_id, sorted(place_ids))
    recipients = await register.recipients(organisation_id, sorted(recipient_ids))
    return References(
        places={place_id: place_out(row) for place_id, row in places.items()},
        recipients={rid: recipient_details(row, keys) for rid, row in recipients.items()},
    )


def _place(references: References, place_id: uuid.UUID | None, field: str) -> dict[str, Any] | None:
    if place_id is None:
        return None
    place = references.places.get(place_id)
    if place is None:
        raise UnknownReference(field, UNKNOWN_PLACE)
    if place["archived_at"] is not None:
        raise UnknownReference(field, ARCHIVED_PLACE)
    return place


async def _located(
    filled: dict[str, Any], where: Location | Geocode | Nowhere, geocoder: Locator | None
) -> dict[str, Any]:
    if isinstance(where, Nowhere):
        raise LocationMissing(where.field, where.reason)
    if isinstance(where, Geocode):
        where = await find_location(where.address, field=where.field, geocoder=geocoder)
    return {**filled, "lat": where.lat, "lon": where.lon}


async def resolve_stops(body: TaskIn, references: References, *, geocoder: Locator | None) -> Stops:
    """Fill each stop from the records it names, and find the coordinates it lacks.

    Precedence, field by field: what the request gives; for a drop-off's person, the recipient, then
    the place's contact; for the address and location, the place, then the recipient. An address given
    without coordinates is looked up.
    """
    pickup_place = _place(references, body.pickup.place_id, "$.pickup.place_id")
    pickup_given = body.pickup.model_dump(exclude_none=True)
    pickup = await _located(
        fill_stop(pickup_given, [(pickup_place, PICKUP_FROM_PLACE)]),
        locate(pickup_given, path="$.pickup", place=pickup_place, recipient=None),
        geocoder,
    )
    dropoffs = []
    for index, drop in enumerate(body.dropoffs):
        path = f"$.dropoffs[{index}]"
        place = _place(references, drop.place_id, f"{path}.place_id")
        recipient = None
        if drop.recipient_id is not None:
            recipient = references.recipients.get(drop.recipient_id)
            if recipient is None:
                raise UnknownReference(f"{path}.recipient_id", UNKNOWN_RECIPIENT)
        given = drop.given()
        filled = fill_stop(
            given,
            [
                (place, {"address": "address"}),
                (recipient, DROPOFF_FROM_RECIPIENT),
                (place, DROPOFF_FROM_PLACE),
            ],
        )
        located = await _located(filled, locate(given, path=path, place=place, recipient=recipient), geocoder)
        dropoffs.append(DropoffOut.model_validate(located))
    recipient_ids = tuple(
        sorted({drop.recipient_id for drop in body.dropoffs if drop.recipient_id is not None})
    )
    return Stops(PickupOut.model_validate(pickup), dropoffs, recipient_ids)


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
    stops: Stops,
    legs: list[tuple[uuid.UUID, str]],
    keys: Keys,
) -> tuple[str, CloudEvent]:
    pickup = stops.pickup
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
            for index, ((leg_id, code_hash), drop) in enumerate(zip(legs, stops.dropoffs, strict=True))
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
    stops: Stops | None = None,
) -> Submission:
    """`submit` on a session, or on an autocommit connection where the write is its own transaction."""
    return await submit(
        SqlSubmissions(session),
        organisation_id=organisation_id,
        idempotency_key=idempotency_key,
        body=body,
        keys=keys,
        stops=stops,
    )


async def replay(
    *, session: AsyncSession, organisation_id: uuid.UUID, idempotency_key: str, body: TaskIn, keys: Keys
) -> Submission | None:
    """The first answer, when this key was used before with this body: then nothing is looked up again
    (the records it named may have changed since). Another body with the key is refused."""
    previous = await SqlSubmissions(session).existing_record(organisation_id, idempotency_key)
    if previous is None:
        return None
    if previous.request_hash != _request_hash(body.model_dump_json()):
        raise IdempotencyKeyReused()
    return Submission(_with_codes(previous.response, keys), replayed=True)


async def submit(
    submissions: Submissions,
    *,
    organisation_id: uuid.UUID,
    idempotency_key: str,
    body: TaskIn,
    keys: Keys,
    stops: Stops | None = None,
) -> Submission:
    """Store a task, its legs, the idempotency record and `task.submitted` in one transaction.

    The same key with the same body answers what the first request answered; with another
    body it is refused (IdempotencyKeyReused); while the first request with that key is still
    running it is refused too (IdempotencyKeyInFlight).
    """
    request_json = body.model_dump_json()
    request_hash = _request_hash(request_json)
    if stops is not None:
        # The task keeps the stops as filled from the register, not the references alone.
        request_json = json.dumps(
            {
                **body.model_dump(mode="json"),
                "pickup": stops.pickup.model_dump(mode="json"),
                "dropoffs": [drop.model_dump(mode="json") for drop in stops.dropoffs],
            }
        )
    else:
        stops = Stops.as_given(body)
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
            event=_submitted_event(task_id, organisation_id, body, stops, legs, keys),
            recipient_ids=stops.recipient_ids,
            actor=audit.request_actor(),
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


async def purge_idempotency_keys(session: AsyncSession, *, retention_s: float) -> int:
    """Forget idempotency records older than `retention_s` (by the database clock); returns how many."""
    return await purge_idempotency_records(session, retention_s=retention_s)
