"""Legs as tasks bring and take them: taken in, assigned or moved by hand, cancelled, flagged, confirmed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow, VolunteerRow
from services.dispatcher.domain import eligibility
from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain.eligibility import Policy
from services.dispatcher.domain.errors import LegNotFound, VolunteerNotFound
from services.dispatcher.domain.eta import EtaPolicy
from services.dispatcher.domain.leg import NOT_YET_PICKED_UP, PRESSING_PRIORITIES, LegStatus
from services.dispatcher.service_layer import routes
from services.dispatcher.service_layer.changes import Changes
from services.dispatcher.service_layer.eta import update_eta_of_holder
from services.dispatcher.service_layer.roster import matching_view
from shared import crypto
from shared.consumer import PermanentError
from shared.errors import Invalid
from shared.events import (
    CloudEvent,
    LegAssigned,
    LegConfirmationFailed,
    LegProblemReported,
    TaskCancelled,
    TaskSubmitted,
    parse_data,
)


async def take_in_task(session: AsyncSession, event: CloudEvent) -> None:
    """`task.submitted`: each drop-off becomes a pending leg."""
    await take_in_tasks(session, [event])


async def take_in_tasks(session: AsyncSession, events: list[CloudEvent]) -> None:
    """`task.submitted` for several tasks fetched together: their legs in one statement.

    What `take_in_task` does for each, in one round trip: taken in on the event loop the matching
    round shares, 200 tasks a second one statement each fell behind on a busy machine, and every
    leg taken in after a round starts waits a whole window for the next.
    """
    rows = [row for event in events for row in _leg_rows(event)]
    if not rows:
        return
    await repository.add_legs(session, rows)
    # Every replica's matcher counts them towards a full batch, and an urgent or critical leg does
    # not wait for the next window: a round starts at once.
    pressing = any(row["priority"] in PRESSING_PRIORITIES for row in rows)
    await repository.notify_taken_in(session, legs=len(rows), pressing=pressing)


def _leg_rows(event: CloudEvent) -> list[dict[str, Any]]:
    """The pending legs of a `task.submitted`, as rows."""
    data = parse_data(event)
    assert isinstance(data, TaskSubmitted)
    weight = sum(item.weight_kg or 0.0 for item in data.items)
    # A supply run's items are shared out over its drop-offs; any other task carries them all on each leg.
    leg_weight = weight / len(data.legs) if data.kind == "supply_run" and data.legs else weight
    return [
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


async def assign_by_hand(
    session: AsyncSession,
    *,
    leg_id: uuid.UUID,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID,
    policy: Policy,
    override_reason: str | None = None,
    now: datetime | None = None,
    eta: EtaPolicy | None = None,
) -> LegRow:
    """An operator gives a pending or offered leg to this volunteer of their organisation.

    The volunteer must be active and below their limit (the database enforces it too), and, unless
    the operator overrides it with a reason, fit to be sent as the matcher would send them: on duty,
    insured, rested, inside the day's caps (`eligibility.HAND_ASSIGNMENT_RULES`). A live offer to
    someone else is withdrawn.
    """
    leg = await repository.lock_organisations_leg(session, leg_id=leg_id, organisation_id=organisation_id)
    if leg is None:
        raise LegNotFound("No such leg.")
    if lifecycle.already_assigned_to(leg.status, holder=leg.volunteer_id, volunteer=volunteer_id):
        return leg
    lifecycle.ensure_not_taken(leg.status)
    await repository.lock_routes(session, [leg.route_id])
    volunteer = await repository.find_volunteer(
        session, volunteer_id=volunteer_id, organisation_id=organisation_id, lock=True
    )
    if volunteer is None:
        raise VolunteerNotFound("No such volunteer.")
    status = lifecycle.assign(leg.status, volunteer, by_hand=True)
    now = now or datetime.now(UTC)
    eligibility.ensure_may_assign_by_hand(
        matching_view(volunteer), now, policy, overridden=override_reason is not None
    )
    woken = await repository.withdraw_live_offers(session, leg_ids=[leg.id], now=now)
    woken |= await routes.leave(session, [leg], now=now)
    await repository.hand_leg(session, leg.id, to=status, holder=volunteer_id, now=now)
    await repository.change_load(session, volunteer_id, active=+1)
    leg.status, leg.volunteer_id = status, volunteer_id
    changes = Changes()
    changes.add(
        _assigned(leg, volunteer, override_reason=override_reason),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    changes.volunteers |= woken
    await _announce_by_hand(
        session,
        leg,
        changes,
        eta=eta,
        now=now,
        action="leg.assigned_by_hand",
        detail={"offers_withdrawn": len(woken), "overridden": override_reason is not None},
    )
    return leg


async def _announce_by_hand(
    session: AsyncSession,
    leg: LegRow,
    changes: Changes,
    *,
    eta: EtaPolicy | None,
    now: datetime,
    action: str,
    detail: dict[str, object],
) -> None:
    """A leg an operator gave its holder: its estimates from them, its events, and the audit row."""
    if eta is not None:
        await update_eta_of_holder(session, leg, now=now, policy=eta, changes=changes)
    await changes.flush(session)
    await repository.add_audit(
        session,
        action,
        organisation_id=leg.organisation_id,
        task_id=leg.task_id,
        leg_id=leg.id,
        volunteer_id=leg.volunteer_id,
        detail=detail,
    )


def _assigned(
    leg: LegRow,
    volunteer: VolunteerRow,
    *,
    override_reason: str | None,
    moved_from: uuid.UUID | None = None,
) -> LegAssigned:
    """`leg.assigned` for a leg an operator gave to `volunteer` (moved from another, or not)."""
    return LegAssigned(
        task_id=leg.task_id,
        leg_id=leg.id,
        volunteer_id=volunteer.id,
        volunteer_name_masked=crypto.mask_name(volunteer.name),
        manual=True,
        override_reason=override_reason,
        moved_from=moved_from,
        speaks_dropoff_language=eligibility.speaks_dropoff_language(volunteer.languages, leg.details),
    )


async def move_leg(
    session: AsyncSession,
    *,
    leg_id: uuid.UUID,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID,
    policy: Policy,
    override_reason: str | None = None,
    now: datetime | None = None,
    eta: EtaPolicy | None = None,
) -> LegRow:
    """An operator moves an assigned leg, not yet picked up, to another volunteer of their organisation.

    The new holder is checked as for `assign_by_hand`; the old one carries one leg fewer, and both
    apps are woken. Moving a leg to its holder changes nothing.
    """
    leg = await repository.lock_organisations_leg(session, leg_id=leg_id, organisation_id=organisation_id)
    if leg is None:
        raise LegNotFound("No such leg.")
    if leg.status == LegStatus.ASSIGNED and leg.volunteer_id == volunteer_id:
        return leg
    lifecycle.ensure_movable(leg.status)
    holder = leg.volunteer_id
    assert holder is not None, "an assigned leg has a holder"
    await repository.lock_routes(session, [leg.route_id])
    volunteers = await repository.lock_organisations_volunteers(
        session, volunteer_ids={holder, volunteer_id}, organisation_id=organisation_id
    )
    target = volunteers.get(volunteer_id)
    if target is None:
        raise VolunteerNotFound("No such volunteer.")
    status = lifecycle.move(leg.status, target)
    now = now or datetime.now(UTC)
    eligibility.ensure_may_assign_by_hand(
        matching_view(target), now, policy, overridden=override_reason is not None
    )
    await routes.leave(session, [leg], now=now)
    await repository.hand_leg(session, leg.id, to=status, holder=volunteer_id, now=now)
    await repository.change_load(session, holder, active=-1)
    await repository.change_load(session, volunteer_id, active=+1)
    leg.status, leg.volunteer_id = status, volunteer_id
    changes = Changes()
    changes.add(
        _assigned(leg, target, override_reason=override_reason, moved_from=holder),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    changes.volunteers.add(holder)
    await _announce_by_hand(
        session,
        leg,
        changes,
        eta=eta,
        now=now,
        action="leg.moved",
        detail={"moved_from": str(holder), "overridden": override_reason is not None},
    )
    return leg


@dataclass(frozen=True)
class Released:
    """What releasing a volunteer's legs did: the legs taken from them, and those left for a decision."""

    legs: list[LegRow]
    needs_decision: list[LegRow]


async def release_volunteers_legs(
    session: AsyncSession,
    *,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID,
    policy: Policy,
    to_volunteer_id: uuid.UUID | None = None,
    override_reason: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Released:
    """An operator takes every leg a volunteer holds and has not picked up (they fell ill, say).

    With `to_volunteer_id` the legs move to that volunteer (checked as for `assign_by_hand`);
    without, they go back to pending for the matcher. Either way they are not offered to the
    volunteer again. Legs already picked up stay with them and are answered as needing a decision:
    the goods are in their hands.
    """
    if to_volunteer_id == volunteer_id:
        raise Invalid(
            "The legs cannot be moved to the volunteer who holds them.",
            errors=[{"field": "$.to_volunteer_id", "message": "is the volunteer whose legs are released"}],
        )
    if (
        await repository.find_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
        is None
    ):
        raise VolunteerNotFound("No such volunteer.")
    # Legs, then routes, then volunteers: the order every other writer locks them in.
    held = await repository.lock_volunteers_legs(
        session,
        volunteer_id=volunteer_id,
        organisation_id=organisation_id,
        statuses=(LegStatus.ASSIGNED, LegStatus.PICKED_UP),
    )
    taken = [leg for leg in held if leg.status == LegStatus.ASSIGNED]
    needs_decision = [leg for leg in held if leg.status != LegStatus.ASSIGNED]
    now = now or datetime.now(UTC)
    await repository.lock_routes(session, [leg.route_id for leg in taken])
    volunteers = await repository.lock_organisations_volunteers(
        session,
        volunteer_ids={volunteer_id} | ({to_volunteer_id} if to_volunteer_id else set()),
        organisation_id=organisation_id,
    )
    changes = Changes()
    changes.volunteers.add(volunteer_id)
    await routes.leave(session, taken, now=now)
    if to_volunteer_id is not None:
        target = volunteers.get(to_volunteer_id)
        if target is None:
            raise VolunteerNotFound("No such volunteer.")
        # Every leg checked before any is moved: all of them go, or none.
        load = lifecycle.Load(target.active_legs, target.max_active_legs, target.deactivated_at)
        statuses = []
        for leg in taken:
            statuses.append(lifecycle.move(leg.status, load))
            load.active_legs += 1
        if taken:
            eligibility.ensure_may_assign_by_hand(
                matching_view(target), now, policy, overridden=override_reason is not None
            )
        for leg, status in zip(taken, statuses, strict=True):
            await repository.hand_leg(session, leg.id, to=status, holder=target.id, now=now)
            leg.status = status
            await repository.remember_rejection(session, leg_id=leg.id, volunteer_id=volunteer_id)
            leg.volunteer_id = target.id
            changes.add(
                _assigned(leg, target, override_reason=override_reason, moved_from=volunteer_id),
                task_id=leg.task_id,
                volunteer_id=target.id,
            )
        if taken:
            await repository.change_load(session, target.id, active=+len(taken))
    else:
        said = "Released by an operator" + (f": {reason}" if reason else ".")
        for leg in taken:
            leg.status = lifecycle.release(leg.status)
            await repository.hand_leg(session, leg.id, to=leg.status, holder=None, now=now)
            await repository.remember_rejection(session, leg_id=leg.id, volunteer_id=volunteer_id)
            leg.volunteer_id = None
            changes.add(
                LegProblemReported(
                    task_id=leg.task_id,
                    leg_id=leg.id,
                    volunteer_id=volunteer_id,
                    reason=said,
                    occurred_at=now,
                ),
                task_id=leg.task_id,
            )
    if taken:
        await repository.change_load(session, volunteer_id, active=-len(taken))
    await changes.flush(session)
    for leg in taken:
        await repository.add_audit(
            session,
            "leg.released",
            organisation_id=organisation_id,
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=volunteer_id,
            detail={
                "to_volunteer": None if to_volunteer_id is None else str(to_volunteer_id),
                "overridden": override_reason is not None,
            },
        )
    return Released(legs=taken, needs_decision=needs_decision)


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
    # Each route they were on is planned again without them (an offered route keeps its other legs).
    woken |= await routes.leave(session, releasable, now=now)
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
