"""An operator's decisions on a leg that waits for one: handed back after pickup, or a flagged delivery."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow
from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain.errors import LegNotFound, VolunteerNotFound
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.service_layer.changes import Changes
from shared import crypto
from shared.events import LegAssigned, LegDecided, LegFailed, Place


async def decide_leg(
    session: AsyncSession,
    *,
    leg_id: uuid.UUID,
    organisation_id: uuid.UUID,
    action: str,
    volunteer_id: uuid.UUID | None,
    note: str | None,
) -> LegRow:
    """Carry out an operator's decision (`domain.leg.decide` says which are open) on a leg of their
    organisation, and announce it: `leg.decided`, and `leg.failed` or `leg.assigned` where it leads.

    - `return_to_pickup`: the volunteer brings the goods back; the leg is pending again from its
      pickup (never offered to that volunteer again).
    - `hand_over`: the goods change hands where they are: the pickup becomes the holder's last known
      location (or stays where it was when none is known), and the leg goes to `volunteer_id`, or
      is pending for matching from there.
    - `fail`: the leg is failed, and leaves its volunteer's list.
    - `confirm` (a flagged delivery): confirmed by other proof; the notifier records it.
    """
    leg = await repository.lock_organisations_leg(session, leg_id=leg_id, organisation_id=organisation_id)
    if leg is None:
        raise LegNotFound("No such leg.")
    previous, holder = LegStatus(leg.status), leg.volunteer_id
    decision = lifecycle.decide(
        leg.status,
        action,
        flagged_at=leg.flagged_at,
        to_volunteer=volunteer_id is not None,
        task_cancelled=leg.released_at is not None,
    )
    now = datetime.now(UTC)
    changes = Changes()
    pickup: Place | None = None
    if decision.pickup_moves:
        pickup = await _move_pickup_to_holder(session, leg, holder=holder, organisation_id=organisation_id)
    new_holder: uuid.UUID | None
    taker_name: str | None = None
    if decision.status == LegStatus.ASSIGNED:
        assert volunteer_id is not None
        volunteer = await repository.find_volunteer(
            session, volunteer_id=volunteer_id, organisation_id=organisation_id, lock=True
        )
        if volunteer is None:
            raise VolunteerNotFound("No such volunteer.")
        lifecycle.ensure_may_carry(volunteer, by_hand=True)
        taker_name = volunteer.name
        await repository.change_load(session, volunteer_id, active=+1)
        new_holder = volunteer_id
    elif decision.status in (LegStatus.PENDING, LegStatus.CANCELLED):
        new_holder = None
    else:
        new_holder = holder  # confirmed or failed: the record keeps who carried it
    await repository.hand_leg(session, leg.id, to=decision.status, holder=new_holder, now=now)
    leg.status, leg.volunteer_id = decision.status, new_holder
    changes.add(
        LegDecided(
            task_id=leg.task_id,
            leg_id=leg.id,
            action=action,
            status=decision.status,
            volunteer_id=holder,
            assigned_to=new_holder if decision.status == LegStatus.ASSIGNED else None,
            pickup=pickup,
            note=note,
        ),
        task_id=leg.task_id,
        volunteer_id=holder,
    )
    if decision.status == LegStatus.ASSIGNED:
        assert new_holder is not None
        changes.add(
            LegAssigned(
                task_id=leg.task_id,
                leg_id=leg.id,
                volunteer_id=new_holder,
                volunteer_name_masked=crypto.mask_name(taker_name),
                manual=True,
            ),
            task_id=leg.task_id,
            volunteer_id=new_holder,
        )
    elif decision.status == LegStatus.FAILED:
        changes.add(
            LegFailed(
                task_id=leg.task_id,
                leg_id=leg.id,
                volunteer_id=holder,
                reason="flagged" if previous == LegStatus.DELIVERED else "handed_back",
                note=note,
            ),
            task_id=leg.task_id,
        )
    await changes.flush(session)
    await repository.add_audit(
        session,
        "leg.decided",
        organisation_id=organisation_id,
        task_id=leg.task_id,
        leg_id=leg.id,
        volunteer_id=leg.volunteer_id,
        detail={"action": action, "status": str(leg.status)},
    )
    return leg


async def _move_pickup_to_holder(
    session: AsyncSession, leg: LegRow, *, holder: uuid.UUID | None, organisation_id: uuid.UUID
) -> Place:
    """The leg's pickup moves to where its holder was last seen (unchanged when nobody knows)."""
    where = (
        await repository.find_volunteer(session, volunteer_id=holder, organisation_id=organisation_id)
        if holder is not None
        else None
    )
    if where is None or where.lat is None or where.lon is None:
        return Place(lat=leg.pickup_lat, lon=leg.pickup_lon, address=leg.details["pickup"].get("address"))
    pickup: dict[str, Any] = {
        **leg.details["pickup"],
        "lat": where.lat,
        "lon": where.lon,
        "address": None,
        "ready_at": None,
        "handed_over_by": str(holder),
    }
    details = {**leg.details, "pickup": pickup}
    await repository.move_pickup(session, leg.id, lat=where.lat, lon=where.lon, details=details)
    leg.pickup_lat, leg.pickup_lon, leg.details = where.lat, where.lon, details
    return Place(lat=where.lat, lon=where.lon)
