"""Dispatcher use cases: take in legs, match them in batches, and carry offers through to delivery.

Every state change happens in the caller's transaction together with its outbox events and a
NOTIFY for each volunteer whose assignments changed (so their long poll wakes at once).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.tables import (
    EscalationRow,
    LegRow,
    OfferRow,
    RejectionRow,
    VolunteerRow,
    outbox,
)
from services.dispatcher.domain import eligibility
from services.dispatcher.domain.matching import Match, Pool, match_batch
from services.dispatcher.service_layer.roster import Box, Roster, live_offers, pickups_reach
from shared import crypto
from shared.consumer import PermanentError
from shared.events import (
    CloudEvent,
    EventData,
    LegAssigned,
    LegConfirmationFailed,
    LegDelivered,
    LegOfferDeclined,
    LegOffered,
    LegOfferExpired,
    LegPickedUp,
    LegProblemReported,
    TaskCancelled,
    TaskEscalated,
    TaskSubmitted,
    build_event,
    parse_data,
)
from shared.http import ProblemError
from shared.outbox import add_events

VOLUNTEER_CHANNEL = "dispatch_volunteer"


@dataclass
class Changes:
    """Events to publish and volunteers to wake, collected while a transaction runs."""

    events: list[tuple[str, CloudEvent]] = field(default_factory=list)
    volunteers: set[uuid.UUID] = field(default_factory=set)

    def add(self, data: EventData, *, task_id: uuid.UUID, volunteer_id: uuid.UUID | None = None) -> None:
        self.events.append(build_event(data, source="/dispatcher", subject=task_id))
        if volunteer_id is not None:
            self.volunteers.add(volunteer_id)

    async def flush(self, session: AsyncSession) -> None:
        await add_events(session, outbox, self.events)
        await _notify(session, self.volunteers)
        self.events, self.volunteers = [], set()


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
            "status": "pending",
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
            },
            "submitted_at": event.time,
        }
        for leg in data.legs
    ]
    await session.execute(insert(LegRow).on_conflict_do_nothing(), rows)


async def expire_offers(session: AsyncSession, *, now: datetime) -> Changes:
    """Offers past their time go back: the leg is pending again, without that volunteer."""
    changes = Changes()
    expired = (
        await session.execute(
            select(OfferRow, LegRow.task_id)
            .join(LegRow, LegRow.id == OfferRow.leg_id)
            .where(OfferRow.status == "live", OfferRow.expires_at <= now)
            .limit(1000)
            # The leg too, skipping pairs an accept or decline holds: they lock leg and offer together,
            # and expiring an offer whose leg they hold would deadlock with them.
            .with_for_update(of=(OfferRow, LegRow), skip_locked=True)
        )
    ).all()
    for offer, task_id in expired:
        await _hand_back(session, offer, status="expired", now=now)
        changes.add(
            LegOfferExpired(
                task_id=task_id, leg_id=offer.leg_id, offer_id=offer.id, volunteer_id=offer.volunteer_id
            ),
            task_id=task_id,
            volunteer_id=offer.volunteer_id,
        )
    return changes


async def _hand_back(session: AsyncSession, offer: OfferRow, *, status: str, now: datetime) -> None:
    await session.execute(
        update(OfferRow).where(OfferRow.id == offer.id).values(status=status, decided_at=now)
    )
    await session.execute(
        insert(RejectionRow)
        .values(leg_id=offer.leg_id, volunteer_id=offer.volunteer_id)
        .on_conflict_do_nothing()
    )
    await session.execute(
        update(LegRow)
        .where(LegRow.id == offer.leg_id, LegRow.status == "offered")
        .values(status="pending", updated_at=now)
    )


def _waiting(now: datetime) -> ColumnElement[bool]:
    """Legs a round at `now` may offer: pending, and ready for pickup."""
    return and_(LegRow.status == "pending", (LegRow.ready_at.is_(None)) | (LegRow.ready_at <= now))


async def prepare_pool(
    session: AsyncSession, roster: Roster, *, now: datetime, policy: eligibility.Policy
) -> Pool | None:
    """Who the next round may offer legs to: the roster brought up to date, then who is available.

    Only volunteers of the organisations whose legs wait now, within reach of those legs, are
    pooled (a leg from elsewhere or from another organisation that arrives before the round is
    matched in the next one); None while no leg waits, so an idle dispatcher does no work per
    volunteer on duty.

    Read without locks; only the volunteers the solver picks are locked (`offer_batch`), so
    replicas and concurrent accepts contend for the few rows a round really changes, not for
    everyone on duty. The pool is CPU work in proportion to everyone on duty: it is built on a
    worker thread, so the event loop keeps serving polls meanwhile.
    """
    lat_min, lat_max, lon_min, lon_max, organisations = (
        await session.execute(
            select(
                func.min(LegRow.pickup_lat),
                func.max(LegRow.pickup_lat),
                func.min(LegRow.pickup_lon),
                func.max(LegRow.pickup_lon),
                func.array_agg(LegRow.organisation_id.distinct()),
            ).where(_waiting(now))
        )
    ).one()
    if lat_min is None:
        return None
    await roster.refresh(session)
    reach = pickups_reach(Box(lat_min, lat_max, lon_min, lon_max), policy)
    within = await roster.volunteers_within(session, reach, organisations=organisations)
    return await asyncio.to_thread(Pool, within, now, policy)


async def offer_batch(
    session: AsyncSession,
    *,
    now: datetime,
    policy: eligibility.Policy,
    offer_ttl: timedelta,
    pool: Pool,
    limit: int = 500,
    k: int = 16,
) -> Changes:
    """One matching round: lock the pending legs, solve their assignment to `pool`, write the offers.

    Whoever in the pool has since gone off duty or filled their slots is left out when the chosen
    volunteers are locked.
    """
    changes = Changes()
    # Lock and stamp in one statement, with who declined each leg or let it expire: least recently
    # considered first, so a leg nobody could take does not keep newer ones out of a full batch.
    picked = (
        select(LegRow.id)
        .where(_waiting(now))
        .order_by(LegRow.considered_at.asc().nulls_first(), LegRow.submitted_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    rejected_by = (
        select(func.array_agg(RejectionRow.volunteer_id))
        .where(RejectionRow.leg_id == LegRow.id)
        .scalar_subquery()
    )
    picked_rows = sorted(
        (
            await session.execute(
                update(LegRow)
                .where(LegRow.id.in_(select(picked.c.id)))
                .values(considered_at=now)
                .returning(LegRow, rejected_by),
                execution_options={"synchronize_session": False},
            )
        ).all(),
        key=lambda row: row[0].submitted_at,
    )
    legs: list[LegRow] = [leg for leg, _ in picked_rows]
    rejected: dict[uuid.UUID, list[uuid.UUID] | None] = {leg.id: ids for leg, ids in picked_rows}
    if not legs or not pool.volunteers:
        return changes
    views = [
        eligibility.Leg(
            id=leg.id,
            task_id=leg.task_id,
            organisation_id=leg.organisation_id,
            priority=leg.priority,
            pickup_lat=leg.pickup_lat,
            pickup_lon=leg.pickup_lon,
            vehicle=leg.vehicle,
            weight_kg=leg.weight_kg,
            skills=frozenset(leg.skills),
            languages=frozenset(leg.languages),
            vulnerable=leg.vulnerable,
            waiting_s=(now - leg.submitted_at).total_seconds(),
            rejected_by=frozenset(rejected[leg.id] or ()),
            kind=leg.kind,
        )
        for leg in legs
    ]
    task_of = {leg.id: leg.task_id for leg in legs}
    # The solve is pure CPU; on a worker thread the event loop keeps serving polls meanwhile.
    solved = await asyncio.to_thread(match_batch, views, pool, now, policy, k=k)
    matches = await _lock_chosen(
        session, solved, organisation_of={leg.id: leg.organisation_id for leg in legs}
    )
    if not matches:
        return changes
    expires_at = now + offer_ttl
    offer_ids = [uuid.uuid4() for _ in matches]
    offers = [
        {
            "id": offer_id,
            "leg_id": m.leg_id,
            "volunteer_id": m.volunteer_id,
            "status": "live",
            "distance_m": m.distance_m,
            "created_at": now,
            "expires_at": expires_at,
        }
        for offer_id, m in zip(offer_ids, matches, strict=True)
    ]
    await session.execute(insert(OfferRow), offers)
    await session.execute(
        update(LegRow)
        .where(LegRow.id.in_([m.leg_id for m in matches]))
        .values(status="offered", updated_at=now)
    )
    for offer_id, m in zip(offer_ids, matches, strict=True):
        changes.add(
            LegOffered(
                task_id=task_of[m.leg_id],
                leg_id=m.leg_id,
                offer_id=offer_id,
                volunteer_id=m.volunteer_id,
                expires_at=expires_at,
                distance_m=round(m.distance_m, 1),
            ),
            task_id=task_of[m.leg_id],
            volunteer_id=m.volunteer_id,
        )
    return changes


async def _lock_chosen(
    session: AsyncSession, matches: list[Match], *, organisation_of: dict[uuid.UUID, uuid.UUID]
) -> list[Match]:
    """Keep the matches whose volunteer this round could lock, still on duty with the free slots.

    A volunteer locked by another replica's round, gone off duty or whose slots filled since they
    were read, is left out: their legs wait for the next round. So is one of another organisation
    than the leg's (`organisation_of`, by leg id), whatever the pool held: the row read under the
    lock has the last word before an offer reveals a leg.
    """
    if not matches:
        return matches
    wanted: dict[uuid.UUID, int] = {}
    for m in matches:
        wanted[m.volunteer_id] = wanted.get(m.volunteer_id, 0) + 1
    live = live_offers()
    locked = (
        await session.execute(
            select(
                VolunteerRow.id,
                VolunteerRow.organisation_id,
                VolunteerRow.max_active_legs - VolunteerRow.active_legs - live,
            )
            .where(VolunteerRow.id.in_(list(wanted)), VolunteerRow.on_duty.is_(True))
            .with_for_update(of=VolunteerRow, skip_locked=True)
        )
    ).all()
    fits = {
        volunteer_id: organisation_id
        for volunteer_id, organisation_id, free in locked
        if free >= wanted[volunteer_id]
    }
    return [
        m for m in matches if m.volunteer_id in fits and fits[m.volunteer_id] == organisation_of[m.leg_id]
    ]


async def _live_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID
) -> tuple[OfferRow, LegRow]:
    row = (
        await session.execute(
            select(OfferRow, LegRow)
            .join(LegRow, LegRow.id == OfferRow.leg_id)
            .where(OfferRow.id == offer_id, OfferRow.volunteer_id == volunteer_id)
            .with_for_update(of=(LegRow, OfferRow))
        )
    ).one_or_none()
    if row is None:
        raise ProblemError(404, "Not found", "No such offer.")
    offer, leg = row
    if offer.status != "live" or offer.expires_at <= datetime.now(UTC):
        raise ProblemError(
            409,
            "Conflict",
            f"This offer is no longer open ({'expired' if offer.status == 'live' else offer.status}).",
        )
    return offer, leg


async def accept_offer(session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID) -> uuid.UUID:
    """The volunteer takes the leg; returns its id. 409 when the offer expired or was withdrawn."""
    now = datetime.now(UTC)
    offer, leg = await _live_offer(session, offer_id=offer_id, volunteer_id=volunteer_id)
    volunteer = (
        await session.execute(select(VolunteerRow).where(VolunteerRow.id == volunteer_id).with_for_update())
    ).scalar_one()
    if volunteer.organisation_id != leg.organisation_id:
        # Matching offers a leg within its own organisation only; an offer that says otherwise
        # must not hand over the recipient's name and phone.
        raise ProblemError(404, "Not found", "No such offer.")
    if volunteer.active_legs >= volunteer.max_active_legs:
        raise ProblemError(409, "Conflict", "You already carry as many legs as your limit allows.")
    await session.execute(
        update(OfferRow).where(OfferRow.id == offer.id).values(status="accepted", decided_at=now)
    )
    await session.execute(
        update(LegRow)
        .where(LegRow.id == leg.id)
        .values(status="assigned", volunteer_id=volunteer_id, updated_at=now)
    )
    # The CHECK constraint on active_legs is the last word even if two accepts race.
    await session.execute(
        update(VolunteerRow)
        .where(VolunteerRow.id == volunteer_id)
        .values(active_legs=VolunteerRow.active_legs + 1)
    )
    changes = Changes()
    changes.add(
        LegAssigned(
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=volunteer_id,
            offer_id=offer.id,
            volunteer_name_masked=crypto.mask_name(volunteer.name),
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    await changes.flush(session)
    return leg.id


async def decline_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID, reason: str | None
) -> None:
    """The volunteer says no: the leg goes to the next batch without them."""
    offer, leg = await _live_offer(session, offer_id=offer_id, volunteer_id=volunteer_id)
    await _hand_back(session, offer, status="declined", now=datetime.now(UTC))
    changes = Changes()
    changes.add(
        LegOfferDeclined(
            task_id=leg.task_id, leg_id=leg.id, offer_id=offer.id, volunteer_id=volunteer_id, reason=reason
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    await changes.flush(session)


async def own_leg(session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID) -> LegRow:
    leg = (
        await session.execute(
            select(LegRow).where(LegRow.id == leg_id, LegRow.volunteer_id == volunteer_id).with_for_update()
        )
    ).scalar_one_or_none()
    if leg is None:
        raise ProblemError(404, "Not found", "No such leg.")
    return leg


async def report_picked_up(session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID) -> LegRow:
    leg = await own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    if leg.status == "picked_up":
        return leg
    if leg.status != "assigned":
        raise ProblemError(409, "Conflict", f"The leg is {leg.status}, not assigned.")
    await session.execute(
        update(LegRow).where(LegRow.id == leg.id).values(status="picked_up", updated_at=func.now())
    )
    leg.status = "picked_up"
    changes = Changes()
    changes.add(
        LegPickedUp(task_id=leg.task_id, leg_id=leg.id, volunteer_id=volunteer_id),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    await changes.flush(session)
    return leg


async def report_delivered(
    session: AsyncSession,
    *,
    leg_id: uuid.UUID,
    volunteer_id: uuid.UUID,
    code_key: bytes,
    confirmation_code: str | None,
    photo_sha256: str | None,
    note: str | None,
) -> LegRow:
    """The volunteer handed the goods over; the code travels on only as its keyed hash.

    A leg already reported delivered may be reported again (the recipient read out the wrong code).
    """
    leg = await own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    if leg.flagged_at is not None:
        raise ProblemError(
            409,
            "Conflict",
            "Too many wrong confirmation codes were sent for this leg: it takes no more reports until "
            "an operator has looked into it.",
        )
    if leg.status not in ("picked_up", "delivered"):
        raise ProblemError(409, "Conflict", f"The leg is {leg.status}; report the pickup first.")
    if leg.status == "picked_up":
        await session.execute(
            update(LegRow).where(LegRow.id == leg.id).values(status="delivered", updated_at=func.now())
        )
        await session.execute(
            update(VolunteerRow)
            .where(VolunteerRow.id == volunteer_id)
            .values(
                active_legs=VolunteerRow.active_legs - 1, legs_done_today=VolunteerRow.legs_done_today + 1
            )
        )
        leg.status = "delivered"
    changes = Changes()
    changes.add(
        LegDelivered(
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=volunteer_id,
            code_hash=crypto.code_hash(code_key, leg.id, confirmation_code) if confirmation_code else None,
            photo_sha256=photo_sha256,
            note=note,
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    await changes.flush(session)
    return leg


def leg_view(leg: LegRow, *, assigned: bool, data_key: bytes) -> dict[str, Any]:
    """A leg as the volunteer's app shows it; the recipient's name and phone only once it is theirs."""
    details = leg.details
    dropoff = {k: v for k, v in details["dropoff"].items() if k != "recipient_sealed"}
    if assigned and details["dropoff"].get("recipient_sealed"):
        recipient = crypto.unseal(data_key, details["dropoff"]["recipient_sealed"])
        dropoff["recipient_name"] = recipient.get("name")
        dropoff["recipient_phone"] = recipient.get("phone")
    return {
        "id": str(leg.id),
        "task_id": str(leg.task_id),
        "status": leg.status,
        "kind": details.get("kind"),
        "priority": leg.priority,
        "deliver_by": details.get("deliver_by"),
        "pickup": details["pickup"],
        "dropoff": dropoff,
        "items": details["items"],
        "flagged": leg.flagged_at is not None,
    }


async def assignments(session: AsyncSession, *, volunteer_id: uuid.UUID, data_key: bytes) -> dict[str, Any]:
    """What a volunteer's app shows: open offers, and legs in hand until confirmed.

    Only legs of the volunteer's own organisation, whatever offer or assignment points elsewhere.
    """
    own = LegRow.organisation_id == (
        select(VolunteerRow.organisation_id).where(VolunteerRow.id == volunteer_id).scalar_subquery()
    )
    offers = (
        await session.execute(
            select(OfferRow, LegRow)
            .join(LegRow, LegRow.id == OfferRow.leg_id)
            .where(OfferRow.volunteer_id == volunteer_id, OfferRow.status == "live", own)
            .order_by(OfferRow.created_at)
        )
    ).all()
    legs = (
        await session.execute(
            select(LegRow)
            .where(
                LegRow.volunteer_id == volunteer_id,
                LegRow.status.in_(("assigned", "picked_up", "delivered")),
                own,
            )
            .order_by(LegRow.updated_at)
        )
    ).scalars()
    return {
        "offers": [
            {
                "id": str(offer.id),
                "expires_at": offer.expires_at.isoformat(),
                "distance_m": round(offer.distance_m, 1),
                "leg": leg_view(leg, assigned=False, data_key=data_key),
            }
            for offer, leg in offers
        ],
        "legs": [leg_view(leg, assigned=True, data_key=data_key) for leg in legs],
    }


async def confirm_leg(session: AsyncSession, event: CloudEvent) -> None:
    """`leg.confirmed`: the leg leaves the volunteer's list."""
    leg_id = uuid.UUID(str(event.data.get("leg_id")))
    leg = (
        await session.execute(select(LegRow).where(LegRow.id == leg_id).with_for_update())
    ).scalar_one_or_none()
    if leg is None:
        raise PermanentError(f"unknown leg {leg_id}")
    if leg.status == "confirmed":
        return
    await session.execute(
        update(LegRow).where(LegRow.id == leg_id).values(status="confirmed", updated_at=func.now())
    )
    if leg.volunteer_id is not None:
        await _notify(session, {leg.volunteer_id})


async def _withdraw_live_offers(
    session: AsyncSession, *, leg_ids: list[uuid.UUID], now: datetime
) -> set[uuid.UUID]:
    """Withdraw the live offers of these legs; returns the volunteers who held them."""
    if not leg_ids:
        return set()
    held = await session.execute(
        update(OfferRow)
        .where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == "live")
        .values(status="withdrawn", decided_at=now)
        .returning(OfferRow.volunteer_id)
    )
    return set(held.scalars())


async def _notify(session: AsyncSession, volunteer_ids: set[uuid.UUID]) -> None:
    """Wake these volunteers' long polls when the transaction commits: one statement for them all."""
    if volunteer_ids:
        await session.execute(
            text("SELECT pg_notify(:channel, id) FROM unnest(CAST(:ids AS text[])) AS id"),
            {"channel": VOLUNTEER_CHANNEL, "ids": sorted(str(v) for v in volunteer_ids)},
        )


async def cancel_task(session: AsyncSession, event: CloudEvent) -> None:
    """`task.cancelled`: live offers are withdrawn and legs not yet picked up are released.

    A leg already picked up stays with its volunteer (the goods are in their hands).
    """
    data = parse_data(event)
    assert isinstance(data, TaskCancelled)
    now = datetime.now(UTC)
    legs = list(
        (
            await session.execute(
                select(LegRow)
                .where(LegRow.task_id == data.task_id, LegRow.organisation_id == data.organisation_id)
                .order_by(LegRow.id)
                .with_for_update()
            )
        ).scalars()
    )
    releasable = [leg for leg in legs if leg.status in ("pending", "offered", "assigned")]
    if not releasable:
        return
    woken = await _withdraw_live_offers(session, leg_ids=[leg.id for leg in releasable], now=now)
    released: dict[uuid.UUID, int] = {}
    for leg in releasable:
        if leg.status == "assigned" and leg.volunteer_id is not None:
            released[leg.volunteer_id] = released.get(leg.volunteer_id, 0) + 1
    for volunteer_id, count in sorted(released.items()):
        await session.execute(
            update(VolunteerRow)
            .where(VolunteerRow.id == volunteer_id)
            .values(active_legs=VolunteerRow.active_legs - count)
        )
    await session.execute(
        update(LegRow)
        .where(LegRow.id.in_([leg.id for leg in releasable]))
        .values(status="cancelled", updated_at=now)
    )
    await _notify(session, woken | set(released))


async def report_problem(
    session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID, reason: str | None
) -> LegRow:
    """The volunteer cannot carry on: the leg goes back to pending, and is not offered to them again."""
    leg = await own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    if leg.status not in ("assigned", "picked_up"):
        raise ProblemError(
            409, "Conflict", f"The leg is {leg.status}; only a leg in hand can be handed back."
        )
    now = datetime.now(UTC)
    await session.execute(
        update(LegRow).where(LegRow.id == leg.id).values(status="pending", volunteer_id=None, updated_at=now)
    )
    await session.execute(
        update(VolunteerRow)
        .where(VolunteerRow.id == volunteer_id)
        .values(active_legs=VolunteerRow.active_legs - 1)
    )
    await session.execute(
        insert(RejectionRow).values(leg_id=leg.id, volunteer_id=volunteer_id).on_conflict_do_nothing()
    )
    leg.status, leg.volunteer_id = "pending", None
    changes = Changes()
    changes.add(
        LegProblemReported(task_id=leg.task_id, leg_id=leg.id, volunteer_id=volunteer_id, reason=reason),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    await changes.flush(session)
    return leg


async def assign_by_hand(
    session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> LegRow:
    """An operator's override: the leg goes to this volunteer of their organisation.

    Only the volunteer's limit still holds (the database enforces it); a live offer to someone else
    is withdrawn.
    """
    leg = (
        await session.execute(
            select(LegRow)
            .where(LegRow.id == leg_id, LegRow.organisation_id == organisation_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if leg is None:
        raise ProblemError(404, "Not found", "No such leg.")
    if leg.volunteer_id == volunteer_id and leg.status in ("assigned", "picked_up", "delivered", "confirmed"):
        return leg
    if leg.status not in ("pending", "offered"):
        raise ProblemError(
            409, "Conflict", f"The leg is {leg.status}; only a leg not yet taken can be assigned."
        )
    volunteer = (
        await session.execute(
            select(VolunteerRow)
            .where(VolunteerRow.id == volunteer_id, VolunteerRow.organisation_id == organisation_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if volunteer is None:
        raise ProblemError(404, "Not found", "No such volunteer.")
    if volunteer.deactivated_at is not None:
        raise ProblemError(409, "Conflict", "The volunteer is deactivated.")
    if volunteer.active_legs >= volunteer.max_active_legs:
        raise ProblemError(
            409, "Conflict", "The volunteer already carries as many legs as their limit allows."
        )
    now = datetime.now(UTC)
    woken = await _withdraw_live_offers(session, leg_ids=[leg.id], now=now)
    await session.execute(
        update(LegRow)
        .where(LegRow.id == leg.id)
        .values(status="assigned", volunteer_id=volunteer_id, updated_at=now)
    )
    await session.execute(
        update(VolunteerRow)
        .where(VolunteerRow.id == volunteer_id)
        .values(active_legs=VolunteerRow.active_legs + 1)
    )
    leg.status, leg.volunteer_id = "assigned", volunteer_id
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


async def escalate_waiting_legs(
    session: AsyncSession, *, now: datetime, wait_limit_s: float, deadline_margin_s: float, limit: int = 1000
) -> Changes:
    """Tasks with a leg nobody took in time raise `task.escalated`, once; the legs stay dispatchable."""
    changes = Changes()
    rows = (
        await session.execute(
            select(LegRow.id, LegRow.task_id, LegRow.submitted_at, LegRow.deliver_by)
            .where(
                LegRow.status.in_(("pending", "offered")),
                (LegRow.ready_at.is_(None)) | (LegRow.ready_at <= now),
                ~select(EscalationRow.task_id).where(EscalationRow.task_id == LegRow.task_id).exists(),
            )
            .order_by(LegRow.submitted_at)
            .limit(limit)
        )
    ).all()
    due: dict[uuid.UUID, tuple[str, list[uuid.UUID]]] = {}
    for leg_id, task_id, submitted_at, deliver_by in rows:
        reason = eligibility.escalation_reason(
            waiting_s=(now - submitted_at).total_seconds(),
            deliver_by=deliver_by,
            now=now,
            wait_limit_s=wait_limit_s,
            deadline_margin_s=deadline_margin_s,
        )
        if reason is not None:
            due.setdefault(task_id, (reason, []))[1].append(leg_id)
    for task_id, (reason, leg_ids) in due.items():
        # The primary key decides which replica raises it: the other inserts nothing and stays quiet.
        inserted = await session.scalar(
            insert(EscalationRow)
            .values(task_id=task_id, reason=reason, escalated_at=now)
            .on_conflict_do_nothing()
            .returning(EscalationRow.task_id)
        )
        if inserted is not None:
            changes.add(
                TaskEscalated(task_id=task_id, leg_ids=sorted(leg_ids), reason=reason), task_id=task_id
            )
    return changes


async def flag_leg(session: AsyncSession, event: CloudEvent) -> None:
    """`leg.confirmation_failed` that flagged the leg: its volunteer's reports are refused from now on."""
    data = parse_data(event)
    assert isinstance(data, LegConfirmationFailed)
    if not data.flagged:
        return
    await session.execute(
        update(LegRow)
        .where(LegRow.id == data.leg_id, LegRow.flagged_at.is_(None))
        .values(flagged_at=event.time, updated_at=func.now())
    )
