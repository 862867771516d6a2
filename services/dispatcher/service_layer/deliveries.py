"""A leg in the volunteer's hands: picked up, delivered, or handed back with a problem."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow, PhotoRow
from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain.errors import LegNotFound, ProofNotFound
from services.dispatcher.domain.eta import EtaPolicy
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.service_layer import routes
from services.dispatcher.service_layer.changes import Changes, audit_leg_action
from services.dispatcher.service_layer.escalation import NEEDS_DECISION, escalate_now
from services.dispatcher.service_layer.eta import update_eta_of_holder
from shared import crypto
from shared.events import LegDelivered, LegPickedUp, LegProblemReported


async def own_leg(session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID) -> LegRow:
    """The volunteer's leg, locked; LegNotFound for any leg they do not hold."""
    leg = await repository.lock_volunteers_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    if leg is None:
        raise LegNotFound("No such leg.")
    return leg


async def report_picked_up(
    session: AsyncSession,
    *,
    leg_id: uuid.UUID,
    volunteer_id: uuid.UUID,
    occurred_at: datetime | None = None,
    eta: EtaPolicy | None = None,
) -> LegRow:
    """The volunteer has the goods; `occurred_at` is when, as their app says (else now). With `eta`,
    the drop-off estimate from the pickup goes out with it: what the recipient is told."""
    leg = await own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    if not lifecycle.can_pick_up(leg.status):
        return leg
    occurred_at = occurred_at or datetime.now(UTC)
    await repository.move_legs(session, [leg.id], LegStatus.PICKED_UP)
    await repository.record_leg_times(session, leg.id, picked_up_at=occurred_at)
    leg.status, leg.picked_up_at = LegStatus.PICKED_UP, occurred_at
    changes = Changes()
    changes.add(
        LegPickedUp(task_id=leg.task_id, leg_id=leg.id, volunteer_id=volunteer_id, occurred_at=occurred_at),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    if eta is not None:
        await update_eta_of_holder(session, leg, now=datetime.now(UTC), policy=eta, changes=changes)
    await changes.flush(session)
    await audit_leg_action(session, "leg.picked_up", leg, volunteer_id=volunteer_id)
    return leg


async def report_delivered(
    session: AsyncSession,
    *,
    leg_id: uuid.UUID,
    volunteer_id: uuid.UUID,
    code_key: bytes,
    confirmation_code: str | None,
    note: str | None,
    today: date,
    photo_id: uuid.UUID | None = None,
    photo_sha256: str | None = None,
    occurred_at: datetime | None = None,
) -> LegRow:
    """The volunteer handed the goods over; the code travels on only as its keyed hash.

    A no-contact drop-off is proven by a photo uploaded for this leg, named by `photo_id` (or, as
    older apps do, by `photo_sha256`, the hash of its stored bytes): a photo never uploaded, or one
    of another leg, is refused (ProofNotFound). The event carries the photo's id and stored hash.

    The leg counts towards the volunteer's legs on `today`, the local day.

    A leg already reported delivered may be reported again (the recipient read out the wrong code).
    """
    leg = await own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    photo = await _proof(session, leg_id=leg.id, photo_id=photo_id, photo_sha256=photo_sha256)
    occurred_at = occurred_at or datetime.now(UTC)
    if lifecycle.can_deliver(leg.status, flagged_at=leg.flagged_at):
        await repository.move_legs(session, [leg.id], LegStatus.DELIVERED)
        await repository.change_load(session, volunteer_id, active=-1, done=+1, today=today)
        await repository.record_leg_times(session, leg.id, delivered_at=occurred_at)
        leg.status, leg.delivered_at = LegStatus.DELIVERED, occurred_at
    changes = Changes()
    changes.add(
        LegDelivered(
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=volunteer_id,
            code_hash=crypto.code_hash(code_key, leg.id, confirmation_code) if confirmation_code else None,
            photo_sha256=photo.sha256 if photo is not None else None,
            photo_id=photo.id if photo is not None else None,
            note=note,
            occurred_at=occurred_at,
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    await changes.flush(session)
    await audit_leg_action(session, "leg.delivered", leg, volunteer_id=volunteer_id)
    return leg


async def _proof(
    session: AsyncSession, *, leg_id: uuid.UUID, photo_id: uuid.UUID | None, photo_sha256: str | None
) -> PhotoRow | None:
    """The uploaded photo of this leg a delivery report names, if it names one."""
    if photo_id is not None:
        photo = await repository.leg_photo(session, leg_id=leg_id, photo_id=photo_id)
        if photo is None:
            raise ProofNotFound("$.photo_id", "names no photo uploaded for this leg")
        if photo_sha256 is not None and photo_sha256 != photo.sha256:
            raise ProofNotFound("$.photo_sha256", "is not the hash of the photo photo_id names")
        return photo
    if photo_sha256 is not None:
        photo = await repository.leg_photo(session, leg_id=leg_id, sha256=photo_sha256)
        if photo is None:
            raise ProofNotFound("$.photo_sha256", "is the hash of no photo uploaded for this leg")
        return photo
    return None


async def report_problem(
    session: AsyncSession,
    *,
    leg_id: uuid.UUID,
    volunteer_id: uuid.UUID,
    reason: str | None,
    occurred_at: datetime | None = None,
) -> LegRow:
    """The volunteer cannot carry on, and the leg is not offered to them again.

    Before pickup the leg goes back to pending. After pickup the goods are in their hands: the leg
    waits in `needs_decision` (they stay its holder, off their count of legs) and its task is
    escalated at once, for an operator to decide (`service_layer.decisions`).
    """
    leg = await own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    status = lifecycle.hand_back(leg.status)
    now = datetime.now(UTC)
    needs_decision = status == LegStatus.NEEDS_DECISION
    holder = volunteer_id if needs_decision else None
    await routes.leave(session, [leg], now=now)
    await repository.hand_leg(session, leg.id, to=status, holder=holder, now=now)
    await repository.change_load(session, volunteer_id, active=-1)
    await repository.remember_rejection(session, leg_id=leg.id, volunteer_id=volunteer_id)
    leg.status, leg.volunteer_id = status, holder
    changes = Changes()
    changes.add(
        LegProblemReported(
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=volunteer_id,
            reason=reason,
            occurred_at=occurred_at or now,
            needs_decision=needs_decision,
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    if needs_decision:
        await escalate_now(
            session, changes, task_id=leg.task_id, leg_ids=[leg.id], reason=NEEDS_DECISION, now=now
        )
    await changes.flush(session)
    await audit_leg_action(session, "leg.problem_reported", leg, volunteer_id=volunteer_id)
    return leg
