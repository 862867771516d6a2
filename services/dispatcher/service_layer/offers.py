"""Offers: a matching round writes them, the volunteer accepts or declines, or they lapse at their time.

Every change happens in the caller's transaction together with its outbox events and a NOTIFY for
each volunteer whose offers changed (so their long poll wakes at once).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow, OfferRow
from services.dispatcher.domain import eligibility, planning
from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain.errors import OfferNotFound
from services.dispatcher.domain.eta import EtaPolicy
from services.dispatcher.domain.matching import AcceptedRoute, Match, Pool, candidate_pairs, match_batch
from services.dispatcher.domain.offer import OfferStatus, ensure_open, expiry, has_lapsed
from services.dispatcher.service_layer import routes
from services.dispatcher.service_layer.changes import Changes, audit_leg_action
from services.dispatcher.service_layer.eta import update_eta_of_holder
from services.dispatcher.service_layer.roster import Box, Roster, pickups_reach
from shared import crypto
from shared.events import LegAssigned, LegOfferDeclined, LegOffered, LegOfferExpired


async def prepare_pool(
    session: AsyncSession,
    roster: Roster,
    *,
    now: datetime,
    policy: eligibility.Policy,
    planned_for: timedelta = timedelta(0),
) -> Pool | None:
    """Who the next round may offer legs to: the roster brought up to date, then who is available.

    Only volunteers of the organisations whose legs wait now, within reach of those legs, are
    pooled (a leg from elsewhere or from another organisation that arrives before the round is
    matched in the next one); None while no leg waits, so an idle dispatcher does no work per
    volunteer on duty.

    Read without locks; only the volunteers the solver picks are locked (`offer_batch`), so
    replicas and concurrent accepts contend for the few rows a round really changes, not for
    everyone on duty. The pool is CPU work in proportion to everyone on duty: it is built on a
    worker thread, so the event loop keeps serving polls meanwhile. A leg posted ahead waits for a
    round only once it has been ready for `planned_for` (`repository.take_waiting_legs`).
    """
    waiting = await repository.waiting_pickups(session, now=now, planned_for=planned_for)
    if waiting is None:
        return None
    box, organisations = waiting
    return await _pool_around(session, roster, Box(*box), organisations, now=now, policy=policy)


async def _pool_around(
    session: AsyncSession,
    roster: Roster,
    pickups: Box,
    organisations: list[uuid.UUID],
    *,
    now: datetime,
    policy: eligibility.Policy,
) -> Pool:
    """The volunteers of `organisations` available at `now` within reach of `pickups`."""
    await roster.refresh(session)
    reach = pickups_reach(pickups, policy)
    return await roster.pool(session, reach, organisations=organisations, now=now, policy=policy)


async def offer_batch(
    session: AsyncSession,
    *,
    now: datetime,
    policy: eligibility.Policy,
    offer_ttl: timedelta,
    pool: Pool,
    limit: int = 500,
    k: int = 16,
    plan: bool = True,
    data_key: bytes | None = None,
    planned_for: timedelta = timedelta(0),
) -> Changes:
    """One matching round: lock the pending legs, solve their assignment to `pool`, write the offers.

    With `data_key`, an offer to a volunteer who asked for an SMS on a new offer carries their
    phone and language sealed under it (`LegOffered.sms_sealed`), for the notifier to send it.

    With `plan` (the default) the offers are routes (`matching.match_routes`): the legs offered to
    one volunteer in a round share one route, new or the one they accepted before (a leg inserted
    into it). Whoever in the pool has since gone off duty or filled their slots is left out when
    the chosen volunteers are locked.
    """
    picked = await repository.take_waiting_legs(session, now=now, limit=limit, planned_for=planned_for)
    legs = [leg for leg, _ in picked]
    if not legs or not pool.volunteers:
        return Changes()
    views = [routes.matching_leg(leg, rejected_by=ids, now=now) for leg, ids in picked]
    # The solve is pure CPU; on a worker thread the event loop keeps serving polls meanwhile.
    pairs = await asyncio.to_thread(candidate_pairs, views, pool, now, policy, k=k)
    accepted: dict[uuid.UUID, AcceptedRoute] = {}
    if plan:
        holders = {pool.volunteers[vi].id for _, vi in pairs if pool.volunteers[vi].active_legs > 0}
        accepted = await routes.accepted_routes(session, holders)
    solved = await asyncio.to_thread(
        match_batch, views, pool, now, policy, k=k, plan=plan, pairs=pairs, routes=accepted
    )
    return await _offer(session, solved, legs, now=now, offer_ttl=offer_ttl, data_key=data_key)


async def plan_batch(
    session: AsyncSession,
    roster: Roster,
    *,
    now: datetime,
    policy: eligibility.Policy,
    offer_ttl: timedelta,
    ahead: timedelta,
    planned_for: timedelta,
    limit: int = 500,
    k: int = planning.PLAN_CANDIDATES,
    every: timedelta = timedelta(seconds=planning.SET_OFF_WITHIN_S),
    data_key: bytes | None = None,
) -> Changes:
    """One plan of the legs posted ahead (`repository.planned_legs`): lock them, plan them all for the
    volunteers around their pickups (`planning.plan_ahead`), and offer each volunteer who must set
    off before the next plan (`every` from now) the trip planned for them, as a route; the other
    legs stay pending for the next plan. Offers are written as a round writes them. One replica
    plans at a time: while another holds the planner's lock this plans nothing (two plans would
    each lock some of the legs and plan the rest without them)."""
    if not await repository.try_lock_planner(session):
        return Changes()
    picked = await repository.planned_legs(
        session, now=now, ahead=ahead, planned_for=planned_for, limit=limit
    )
    legs = [leg for leg, _ in picked]
    if not legs:
        return Changes()
    pickups = Box(
        min(leg.pickup_lat for leg in legs),
        max(leg.pickup_lat for leg in legs),
        min(leg.pickup_lon for leg in legs),
        max(leg.pickup_lon for leg in legs),
    )
    organisations = sorted({leg.organisation_id for leg in legs})
    pool = await _pool_around(session, roster, pickups, organisations, now=now, policy=policy)
    if not pool.volunteers:
        return Changes()
    views = [routes.matching_leg(leg, rejected_by=ids, now=now) for leg, ids in picked]
    holders = {v.id for v in pool.volunteers if v.active_legs > 0}
    accepted = await routes.accepted_routes(session, holders)
    solved = await asyncio.to_thread(
        planning.plan_ahead, views, pool, now, policy, accepted, k=k, set_off_within_s=every.total_seconds()
    )
    return await _offer(session, solved, legs, now=now, offer_ttl=offer_ttl, data_key=data_key)


async def _offer(
    session: AsyncSession,
    solved: list[Match],
    legs: list[LegRow],
    *,
    now: datetime,
    offer_ttl: timedelta,
    data_key: bytes | None,
) -> Changes:
    """Write the offers of a round or a plan, for the volunteers it can lock (`_lock_chosen`)."""
    changes = Changes()
    task_of = {leg.id: leg.task_id for leg in legs}
    organisation_of = {leg.id: leg.organisation_id for leg in legs}
    matches, sms_contacts = await _lock_chosen(session, solved, organisation_of=organisation_of)
    if not matches:
        return changes
    expires_at = expiry(offered_at=now, ttl=offer_ttl)
    offer_ids = [uuid.uuid4() for _ in matches]
    # One route per volunteer this round: the accepted one a leg goes into, or a new one.
    route_of: dict[uuid.UUID, uuid.UUID] = {}
    new_routes: list[dict[str, Any]] = []
    stops_of: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for m in matches:
        if m.route is None or m.volunteer_id in route_of:
            continue
        stops_of[m.volunteer_id] = routes.stops_json(m.route)
        if m.route_id is not None:
            route_of[m.volunteer_id] = m.route_id
            continue
        route_of[m.volunteer_id] = uuid.uuid4()
        new_routes.append(
            {
                "id": route_of[m.volunteer_id],
                "organisation_id": organisation_of[m.leg_id],
                "volunteer_id": m.volunteer_id,
                "status": "offered",
                "stops": stops_of[m.volunteer_id],
            }
        )
    # The routes, the offers and their legs in one statement: every leg of the round waits for it.
    await repository.add_round_offers(
        session,
        routes=new_routes,
        offers=[
            {
                "id": offer_id,
                "leg_id": m.leg_id,
                "volunteer_id": m.volunteer_id,
                "distance_m": m.distance_m,
                "route_id": route_of.get(m.volunteer_id),
                "route_stops": stops_of.get(m.volunteer_id),
            }
            for offer_id, m in zip(offer_ids, matches, strict=True)
        ],
        now=now,
        expires_at=expires_at,
    )
    sms_to: dict[uuid.UUID, str] = {}
    if data_key is not None:
        # Read when the volunteers were locked (`_lock_chosen`): no statement more per round.
        sms_to = {
            volunteer_id: crypto.seal(data_key, {"phone": phone, "language": language})
            for volunteer_id, (phone, language) in sms_contacts.items()
        }
    for offer_id, m in zip(offer_ids, matches, strict=True):
        changes.add(
            LegOffered(
                task_id=task_of[m.leg_id],
                leg_id=m.leg_id,
                offer_id=offer_id,
                volunteer_id=m.volunteer_id,
                expires_at=expires_at,
                distance_m=round(m.distance_m, 1),
                route_id=route_of.get(m.volunteer_id),
                sms_sealed=sms_to.get(m.volunteer_id),
            ),
            task_id=task_of[m.leg_id],
            volunteer_id=m.volunteer_id,
        )
    return changes


async def _lock_chosen(
    session: AsyncSession, matches: list[Match], *, organisation_of: dict[uuid.UUID, uuid.UUID]
) -> tuple[list[Match], dict[uuid.UUID, tuple[str, str]]]:
    """Keep the matches whose volunteer this round could lock, still on duty with the free slots;
    with the phone and language of those kept who asked for an SMS on a new offer.

    A volunteer locked by another replica's round, gone off duty or whose slots filled since they
    were read, is left out: their legs wait for the next round. So is one of another organisation
    than the leg's (`organisation_of`, by leg id), whatever the pool held: the row read under the
    lock has the last word before an offer reveals a leg.
    """
    if not matches:
        return matches, {}
    # An offer to join an accepted route refers to it: the route is taken before the volunteer, as
    # every writer takes them, and one busy elsewhere (its holder reporting a problem) is left for
    # the next round rather than waited for while this round holds volunteers.
    joined = {m.route_id for m in matches if m.route_id is not None}
    if joined:
        free_routes = await repository.hold_free_routes(session, joined)
        matches = [m for m in matches if m.route_id is None or m.route_id in free_routes]
    wanted: dict[uuid.UUID, int] = {}
    for m in matches:
        wanted[m.volunteer_id] = wanted.get(m.volunteer_id, 0) + 1
    locked = await repository.lock_free_volunteers(session, list(wanted))
    fits = {
        volunteer_id: organisation_id
        for volunteer_id, organisation_id, free, _ in locked
        if free >= wanted[volunteer_id]
    }
    kept = [
        m for m in matches if m.volunteer_id in fits and fits[m.volunteer_id] == organisation_of[m.leg_id]
    ]
    chosen = {m.volunteer_id for m in kept}
    sms = {volunteer_id: to for volunteer_id, _, _, to in locked if to is not None and volunteer_id in chosen}
    return kept, sms


async def _hand_back(session: AsyncSession, offer: OfferRow, *, status: OfferStatus, now: datetime) -> None:
    """Close the offer; its leg is pending again, out of the route it was offered in, and not offered
    to that volunteer again. A new route whose offers are all closed ends."""
    await repository.decide_offer(session, offer_id=offer.id, status=status, now=now)
    await repository.remember_rejection(session, leg_id=offer.leg_id, volunteer_id=offer.volunteer_id)
    await repository.return_offered_legs(session, [offer.leg_id], now=now)
    if offer.route_id is not None:
        await repository.end_unoffered_routes(session, [offer.route_id], now=now)


async def expire_offers(session: AsyncSession, *, now: datetime) -> Changes:
    """Offers past their time go back: the leg is pending again, without that volunteer."""
    changes = Changes()
    for offer, task_id in await repository.lock_lapsed_offers(session, now=now):
        await _hand_back(session, offer, status=OfferStatus.EXPIRED, now=now)
        changes.add(
            LegOfferExpired(
                task_id=task_id,
                leg_id=offer.leg_id,
                offer_id=offer.id,
                volunteer_id=offer.volunteer_id,
                route_id=offer.route_id,
            ),
            task_id=task_id,
            volunteer_id=offer.volunteer_id,
        )
    return changes


async def _open_offers(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID, now: datetime
) -> list[tuple[OfferRow, LegRow]]:
    """The volunteer's offer and every other live offer of the new route it proposes, with their
    legs, locked; refused unless the offer is still open. The offer named comes first. An offer to
    insert a leg into a route already accepted stands alone.

    A route's offers are locked together in leg id order, as a cancellation locks a task's legs:
    two answers to two offers of one route (two taps, two devices) wait for each other instead of
    deadlocking.
    """
    route_id = await repository.proposed_route(session, offer_id=offer_id, volunteer_id=volunteer_id)
    if route_id is not None:
        together = await repository.lock_route_offers(session, route_id=route_id, volunteer_id=volunteer_id)
        named = [pair for pair in together if pair[0].id == offer_id]
        if named:
            ensure_open(status=named[0][0].status, expires_at=named[0][0].expires_at, now=now)
            others = [
                (offer, leg)
                for offer, leg in together
                if offer.id != offer_id
                and not has_lapsed(status=offer.status, expires_at=offer.expires_at, now=now)
            ]
            return [named[0], *others]
    # No route, or the offer is no longer live: on its own (refused below unless open).
    found = await repository.lock_volunteers_offer(session, offer_id=offer_id, volunteer_id=volunteer_id)
    if found is None:
        raise OfferNotFound("No such offer.")
    offer, leg = found
    ensure_open(status=offer.status, expires_at=offer.expires_at, now=now)
    return [(offer, leg)]


async def accept_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID, eta: EtaPolicy | None = None
) -> LegRow:
    """The volunteer takes the offer's route: the leg, and every other leg offered with it in a new
    route (an offer to insert a leg into their accepted route: that leg only); returns the leg of
    the offer named. OfferClosed when the offer expired or was withdrawn.

    Each leg is assigned (`leg.assigned`, with its route) and is picked up and delivered on its own
    from then on. A new route becomes the volunteer's accepted route, or joins the one they have
    (`routes.take_on`). With `eta`, the legs' first estimates go out with them (`leg.eta_updated`)
    when the volunteer's position is known."""
    now = datetime.now(UTC)
    together = await _open_offers(session, offer_id=offer_id, volunteer_id=volunteer_id, now=now)
    route_id = together[0][0].route_id
    if route_id is not None:
        # Legs, then routes, then the volunteer (`repository.lock_routes`): the volunteer's answer
        # and their problem report at the same moment wait for each other instead of deadlocking.
        await repository.lock_route(session, route_id)
        await repository.lock_active_route(session, volunteer_id)
    volunteer = await repository.lock_volunteer(session, volunteer_id)
    if any(volunteer.organisation_id != leg.organisation_id for _, leg in together):
        # Matching offers a leg within its own organisation only; an offer that says otherwise
        # must not hand over the recipient's name and phone.
        raise OfferNotFound("No such offer.")
    # Every leg is checked before any is taken: the whole route, or nothing.
    load = lifecycle.Load(volunteer.active_legs, volunteer.max_active_legs, volunteer.deactivated_at)
    statuses = []
    for _, leg in together:
        statuses.append(lifecycle.assign(leg.status, load, by_hand=False))
        load.active_legs += 1
    for (offer, leg), status in zip(together, statuses, strict=True):
        await repository.decide_offer(session, offer_id=offer.id, status=OfferStatus.ACCEPTED, now=now)
        await repository.hand_leg(session, leg.id, to=status, holder=volunteer_id, now=now)
        leg.status, leg.volunteer_id, leg.updated_at = status, volunteer_id, now
    await repository.change_load(session, volunteer_id, active=+len(together))
    if route_id is not None:
        route_id = await routes.take_on(
            session, volunteer=volunteer, route_id=route_id, legs=[leg for _, leg in together], now=now
        )
    changes = Changes()
    for offer, leg in together:
        leg.route_id = route_id
        changes.add(
            LegAssigned(
                task_id=leg.task_id,
                leg_id=leg.id,
                volunteer_id=volunteer_id,
                offer_id=offer.id,
                volunteer_name_masked=crypto.mask_name(volunteer.name),
                speaks_dropoff_language=eligibility.speaks_dropoff_language(volunteer.languages, leg.details),
                route_id=route_id,
            ),
            task_id=leg.task_id,
            volunteer_id=volunteer_id,
        )
        if eta is not None:
            await update_eta_of_holder(session, leg, now=now, policy=eta, changes=changes)
    await changes.flush(session)
    for _, leg in together:
        await audit_leg_action(session, "offer.accepted", leg, volunteer_id=volunteer_id)
    return together[0][1]


async def decline_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID, reason: str | None
) -> None:
    """The volunteer says no to the offer's route: every leg offered in it goes to the next batch
    without them (an offer to insert a leg into their accepted route: that leg only)."""
    now = datetime.now(UTC)
    together = await _open_offers(session, offer_id=offer_id, volunteer_id=volunteer_id, now=now)
    changes = Changes()
    for offer, leg in together:
        await _hand_back(session, offer, status=OfferStatus.DECLINED, now=now)
        changes.add(
            LegOfferDeclined(
                task_id=leg.task_id,
                leg_id=leg.id,
                offer_id=offer.id,
                volunteer_id=volunteer_id,
                reason=reason,
                route_id=offer.route_id,
            ),
            task_id=leg.task_id,
            volunteer_id=volunteer_id,
        )
    await changes.flush(session)
    for _, leg in together:
        await audit_leg_action(session, "offer.declined", leg, volunteer_id=volunteer_id)
