"""Offers: a matching round writes them, the volunteer accepts or declines, or they lapse at their time.

Every change happens in the caller's transaction together with its outbox events and a NOTIFY for
each volunteer whose offers changed (so their long poll wakes at once).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow, OfferRow
from services.dispatcher.domain import eligibility
from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain.errors import OfferNotFound
from services.dispatcher.domain.eta import EtaPolicy
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.domain.matching import Match, Pool, match_batch
from services.dispatcher.domain.offer import OfferStatus, ensure_open, expiry
from services.dispatcher.service_layer.changes import Changes, audit_leg_action
from services.dispatcher.service_layer.eta import update_eta_of_holder
from services.dispatcher.service_layer.roster import Box, Roster, pickups_reach
from shared import crypto
from shared.events import LegAssigned, LegOfferDeclined, LegOffered, LegOfferExpired


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
    waiting = await repository.waiting_pickups(session, now=now)
    if waiting is None:
        return None
    (lat_min, lat_max, lon_min, lon_max), organisations = waiting
    await roster.refresh(session)
    reach = pickups_reach(Box(lat_min, lat_max, lon_min, lon_max), policy)
    within = await roster.volunteers_within(session, reach, organisations=organisations)
    return await asyncio.to_thread(Pool, within, now, policy)


def _matching_view(leg: LegRow, *, rejected_by: list[uuid.UUID] | None, now: datetime) -> eligibility.Leg:
    return eligibility.Leg(
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
        rejected_by=frozenset(rejected_by or ()),
        kind=leg.kind,
    )


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
    picked = await repository.take_waiting_legs(session, now=now, limit=limit)
    legs = [leg for leg, _ in picked]
    if not legs or not pool.volunteers:
        return changes
    views = [_matching_view(leg, rejected_by=ids, now=now) for leg, ids in picked]
    task_of = {leg.id: leg.task_id for leg in legs}
    # The solve is pure CPU; on a worker thread the event loop keeps serving polls meanwhile.
    solved = await asyncio.to_thread(match_batch, views, pool, now, policy, k=k)
    matches = await _lock_chosen(
        session, solved, organisation_of={leg.id: leg.organisation_id for leg in legs}
    )
    if not matches:
        return changes
    expires_at = expiry(offered_at=now, ttl=offer_ttl)
    offer_ids = [uuid.uuid4() for _ in matches]
    await repository.add_offers(
        session,
        [
            {
                "id": offer_id,
                "leg_id": m.leg_id,
                "volunteer_id": m.volunteer_id,
                "status": OfferStatus.LIVE,
                "distance_m": m.distance_m,
                "created_at": now,
                "expires_at": expires_at,
            }
            for offer_id, m in zip(offer_ids, matches, strict=True)
        ],
    )
    await repository.move_legs(session, [m.leg_id for m in matches], LegStatus.OFFERED, now=now)
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
    locked = await repository.lock_free_volunteers(session, list(wanted))
    fits = {
        volunteer_id: organisation_id
        for volunteer_id, organisation_id, free in locked
        if free >= wanted[volunteer_id]
    }
    return [
        m for m in matches if m.volunteer_id in fits and fits[m.volunteer_id] == organisation_of[m.leg_id]
    ]


async def _hand_back(session: AsyncSession, offer: OfferRow, *, status: OfferStatus, now: datetime) -> None:
    """Close the offer; its leg is pending again and not offered to that volunteer again."""
    await repository.decide_offer(session, offer_id=offer.id, status=status, now=now)
    await repository.remember_rejection(session, leg_id=offer.leg_id, volunteer_id=offer.volunteer_id)
    await repository.move_legs(
        session, [offer.leg_id], LegStatus.PENDING, now=now, only_from=LegStatus.OFFERED
    )


async def expire_offers(session: AsyncSession, *, now: datetime) -> Changes:
    """Offers past their time go back: the leg is pending again, without that volunteer."""
    changes = Changes()
    for offer, task_id in await repository.lock_lapsed_offers(session, now=now):
        await _hand_back(session, offer, status=OfferStatus.EXPIRED, now=now)
        changes.add(
            LegOfferExpired(
                task_id=task_id, leg_id=offer.leg_id, offer_id=offer.id, volunteer_id=offer.volunteer_id
            ),
            task_id=task_id,
            volunteer_id=offer.volunteer_id,
        )
    return changes


async def _open_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID, now: datetime
) -> tuple[OfferRow, LegRow]:
    """The volunteer's offer and its leg, locked; refused unless the offer is still open."""
    found = await repository.lock_volunteers_offer(session, offer_id=offer_id, volunteer_id=volunteer_id)
    if found is None:
        raise OfferNotFound("No such offer.")
    offer, leg = found
    ensure_open(status=offer.status, expires_at=offer.expires_at, now=now)
    return offer, leg


async def accept_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID, eta: EtaPolicy | None = None
) -> LegRow:
    """The volunteer takes the leg; returns it. OfferClosed when the offer expired or was withdrawn.

    With `eta`, the leg's first estimates go out with it (`leg.eta_updated`) when the volunteer's
    position is known."""
    now = datetime.now(UTC)
    offer, leg = await _open_offer(session, offer_id=offer_id, volunteer_id=volunteer_id, now=now)
    volunteer = await repository.lock_volunteer(session, volunteer_id)
    if volunteer.organisation_id != leg.organisation_id:
        # Matching offers a leg within its own organisation only; an offer that says otherwise
        # must not hand over the recipient's name and phone.
        raise OfferNotFound("No such offer.")
    status = lifecycle.assign(leg.status, volunteer, by_hand=False)
    await repository.decide_offer(session, offer_id=offer.id, status=OfferStatus.ACCEPTED, now=now)
    await repository.hand_leg(session, leg.id, to=status, holder=volunteer_id, now=now)
    await repository.change_load(session, volunteer_id, active=+1)
    leg.status, leg.volunteer_id, leg.updated_at = status, volunteer_id, now
    changes = Changes()
    changes.add(
        LegAssigned(
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=volunteer_id,
            offer_id=offer.id,
            volunteer_name_masked=crypto.mask_name(volunteer.name),
            speaks_dropoff_language=eligibility.speaks_dropoff_language(volunteer.languages, leg.details),
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    if eta is not None:
        await update_eta_of_holder(session, leg, now=now, policy=eta, changes=changes)
    await changes.flush(session)
    await audit_leg_action(session, "offer.accepted", leg, volunteer_id=volunteer_id)
    return leg


async def decline_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID, reason: str | None
) -> None:
    """The volunteer says no: the leg goes to the next batch without them."""
    now = datetime.now(UTC)
    offer, leg = await _open_offer(session, offer_id=offer_id, volunteer_id=volunteer_id, now=now)
    await _hand_back(session, offer, status=OfferStatus.DECLINED, now=now)
    changes = Changes()
    changes.add(
        LegOfferDeclined(
            task_id=leg.task_id, leg_id=leg.id, offer_id=offer.id, volunteer_id=volunteer_id, reason=reason
        ),
        task_id=leg.task_id,
        volunteer_id=volunteer_id,
    )
    await changes.flush(session)
    await audit_leg_action(session, "offer.declined", leg, volunteer_id=volunteer_id)
