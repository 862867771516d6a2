"""Legs as tasks bring and take them: taken in, assigned by hand, cancelled, flagged, confirmed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow
from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain.errors import LegNotFound, VolunteerNotFound
from services.dispatcher.domain.leg import NOT_YET_PICKED_UP, LegStatus
from services.dispatcher.service_layer.changes import Changes
from shared import crypto
from shared.consumer import PermanentError
from shared.events import (
    CloudEvent,
    LegAssigned,
    LegConfirmationFailed,
    TaskCancelled,
    TaskSubmitted,
    parse_data,
)


async def take_in_task(session: AsyncSession, event: CloudEvent) -> None:
    """`task.submitted`: each drop-off becomes a pending leg."""
    data = parse_data(event)
    assert isinstance(data, TaskSubmitted)
    weight = sum(item.weight_kg or 0.0 for item in data.items)
    # A supply run's items are shared out over its drop-offs; any other task carries them all on each leg.
    leg_weight = weight / len(data.legs) if data.kind == "supply_run" and data.legs else weight
    rows = [
        {
            "id": leg.leg_id,
            "task_id": data.task_id,
            "organisation_id": data.organisation_id,
            "index": leg.index,
            "status": LegStatus.PENDING,
            "kind": data.kind,
            "priority": data.priority,
            "pickup_lat": data.pickup.lat,
            "pickup_lon": data.pickup.lon,
            "dropoff_lat": leg.dropoff.lat,
            "dropoff_lon": leg.dropoff.lon,
            "vehicle": data.requirements.vehicle,
            "weight_kg": leg_weight,
            "skills": sorted(set(data.requirements.skills)),
            "languages": sorted(set(data.requirements.languages) | {leg.dropoff.language}),
            "vulnerable": leg.dropoff.vulnerable,
            "ready_at": data.pickup.ready_at,
            "deliver_by": data.deliver_by,
            "details": {
                "pickup": data.pickup.model_dump(mode="json", exclude={"contact_sealed"}),
                "dropoff": leg.dropoff.model_dump(mode="json"),
                "items": [item.model_dump(mode="json") for item in data.items],
                "kind": data.kind,
                "priority": data.priority,
                "deliver_by": data.deliver_by.isoformat() if data.deliver_by else None,
                "code_hash": leg.code_hash,
                "notes": data.notes,
            },
            "submitted_at": event.time,
        }
        for leg in data.legs
    ]
    await repository.add_legs(session, rows)


async def assign_by_hand(
    session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> LegRow:
    """An operator's override: the leg goes to this volunteer of their organisation.

    Only the volunteer's limit still holds (the database enforces it); a live offer to someone else
    is withdrawn.
    """
    leg = await repository.lock_organisations_leg(session, leg_id=leg_id, organisation_id=organisation_id)
    if leg is None:
        raise LegNotFound("No such leg.")
    if lifecycle.already_assigned_to(leg.status, holder=leg.volunteer_id, volunteer=volunteer_id):
        return leg
    lifecycle.ensure_not_taken(leg.status)
    volunteer = await repository.find_volunteer(
        session, volunteer_id=volunteer_id, organisation_id=organisation_id, lock=True
    )
    if volunteer is None:
        raise VolunteerNotFound("No such volunteer.")
    status = lifecycle.assign(leg.status, volunteer, by_hand=True)
    now = datetime.now(UTC)
    woken = await repository.withdraw_live_offers(session, leg_ids=[leg.id], now=now)
    await repository.hand_leg(session, leg.id, to=status, holder=volunteer_id, now=now)
    await repository.change_load(session, volunteer_id, active=+1)
    leg.status, leg.volunteer_id = status, volunteer_id
    changes = Changes()
    changes.add(
        LegAssigned(
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=volunteer_id,
            volunteer_name_masked=crypto.mask_name(volunteer.name),
            manual=True,
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    changes.volunteers |= woken
    await changes.flush(session)
    return leg


async def cancel_task(session: AsyncSession, event: CloudEvent) -> None:
    """`task.cancelled`: live offers are withdrawn and legs not yet picked up are released.

    A leg already picked up stays with its volunteer (the goods are in their hands); one delivered
    but not yet confirmed leaves their list (nothing more for them to do).
    """
    data = parse_data(event)
    assert isinstance(data, TaskCancelled)
    now = datetime.now(UTC)
    legs = await repository.lock_task_legs(
        session, task_id=data.task_id, organisation_id=data.organisation_id
    )
    delivered = [leg for leg in legs if leg.status == LegStatus.DELIVERED and leg.released_at is None]
    if delivered:
        await repository.release_delivered_legs(session, [leg.id for leg in delivered], at=now)
        await repository.notify_volunteers(
            session, {leg.volunteer_id for leg in delivered if leg.volunteer_id is not None}
        )
    # A leg waiting for a decision keeps waiting (the goods are somewhere), marked as of a cancelled task.
    waiting = [leg.id for leg in legs if leg.status == LegStatus.NEEDS_DECISION and leg.released_at is None]
    await repository.mark_task_cancelled(session, waiting, at=now)
    releasable = [leg for leg in legs if leg.status in NOT_YET_PICKED_UP]
    if not releasable:
        return
    woken = await repository.withdraw_live_offers(session, leg_ids=[leg.id for leg in releasable], now=now)
    released: dict[uuid.UUID, int] = {}
    for leg in releasable:
        if leg.status == LegStatus.ASSIGNED and leg.volunteer_id is not None:
            released[leg.volunteer_id] = released.get(leg.volunteer_id, 0) + 1
    for volunteer_id, count in sorted(released.items()):
        await repository.change_load(session, volunteer_id, active=-count)
    await repository.move_legs(session, [leg.id for leg in releasable], LegStatus.CANCELLED, now=now)
    await repository.notify_volunteers(session, woken | set(released))


async def confirm_leg(session: AsyncSession, event: CloudEvent) -> None:
    """`leg.confirmed`: the leg leaves the volunteer's list."""
    leg_id = uuid.UUID(str(event.data.get("leg_id")))
    leg = await repository.lock_leg(session, leg_id)
    if leg is None:
        raise PermanentError(f"unknown leg {leg_id}")
    if leg.status == LegStatus.CONFIRMED:
        return
    # The notifier has the last word on a delivery: its confirmation stands whatever the leg's status.
    await repository.move_legs(session, [leg_id], LegStatus.CONFIRMED)
    if leg.volunteer_id is not None:
        await repository.notify_volunteers(session, {leg.volunteer_id})


async def flag_leg(session: AsyncSession, event: CloudEvent) -> None:
    """`leg.confirmation_failed` that flagged the leg: its volunteer's reports are refused from now on."""
    data = parse_data(event)
    assert isinstance(data, LegConfirmationFailed)
    if not data.flagged:
        return
    await repository.flag_leg(session, leg_id=data.leg_id, at=event.time)
