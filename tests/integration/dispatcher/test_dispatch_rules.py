"""Dispatch use cases against PostgreSQL: staleness, widening, escalation, cancel, problem, hand assign."""

from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import LegRow, OfferRow, VolunteerRow
from services.dispatcher.domain.eligibility import Policy, local_day
from services.dispatcher.service_layer.deliveries import report_picked_up, report_problem
from services.dispatcher.service_layer.escalation import escalate_waiting_legs
from services.dispatcher.service_layer.legs import assign_by_hand, cancel_task
from services.dispatcher.service_layer.offers import accept_offer, decline_offer, expire_offers
from services.dispatcher.service_layer.roster import Roster
from services.dispatcher.service_layer.views import assignments
from shared.errors import Conflict, NotFound
from shared.events import TaskCancelled, build_event
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import (
    FUTURE,
    OFFER_TTL,
    add_volunteer,
    matching_round,
    outbox_types,
    submit_task,
)

Maker = async_sessionmaker[AsyncSession]
POLICY = Policy()


async def offers_for(session: AsyncSession, leg_ids: list[uuid.UUID]) -> dict[uuid.UUID, OfferRow]:
    rows = await session.execute(
        select(OfferRow).where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == "live")
    )
    return {offer.leg_id: offer for offer in rows.scalars()}


# One roster for the whole module, as a dispatcher process keeps one: every rule below also holds
# when volunteers are read incrementally between rounds.
ROSTER = Roster()


async def test_volunteer_with_a_stale_fix_gets_no_offer_until_reporting_again(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=lat, lon=lon, location_at=FUTURE - timedelta(hours=1))
        task = await submit_task(session, lat=lat, lon=lon)
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert await offers_for(session, [leg_id]) == {}
    async with sessionmaker() as session, session.begin():
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == v.id).values(location_at=FUTURE))
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert (await offers_for(session, [leg_id]))[leg_id].volunteer_id == v.id


async def test_search_radius_widens_while_the_leg_waits(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        # About 3.3 km away on foot: beyond the 2 km walking radius until the leg has waited a while.
        v = await add_volunteer(session, lat=lat + 0.03, lon=lon, vehicle="foot")
        # Critical, so that only the radius decides: a routine leg may also be held back from a far
        # volunteer while the round has more legs than free volunteers (other tests' legs count).
        task = await submit_task(session, lat=lat, lon=lon, submitted_at=FUTURE, priority="critical")
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert await offers_for(session, [leg_id]) == {}
    await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=125))
    async with sessionmaker() as session:
        assert (await offers_for(session, [leg_id]))[leg_id].volunteer_id == v.id


async def test_unplaced_leg_escalates_once_and_stays_dispatchable_for_a_hand_assignment(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    settings = stack.settings()
    async with sessionmaker() as session, session.begin():
        task = await submit_task(
            session, lat=lat, lon=lon, organisation_id=org, submitted_at=FUTURE - timedelta(seconds=30)
        )
    limits = {
        "wait_limit_s": settings.escalation_wait_s,
        "deadline_margin_s": settings.escalation_deadline_margin_s,
    }
    async with sessionmaker() as session, session.begin():
        early = await escalate_waiting_legs(
            session,
            now=FUTURE,
            wait_limit_s=limits["wait_limit_s"],
            deadline_margin_s=limits["deadline_margin_s"],
        )
        assert all(event.subject != str(task.task_id) for _, event in early.events), "not yet"
        await early.flush(session)
    later = FUTURE + timedelta(seconds=settings.escalation_wait_s)
    raised = []
    for _ in range(2):
        async with sessionmaker() as session, session.begin():
            changes = await escalate_waiting_legs(
                session,
                now=later,
                wait_limit_s=limits["wait_limit_s"],
                deadline_margin_s=limits["deadline_margin_s"],
            )
            raised += [e for _, e in changes.events if e.subject == str(task.task_id)]
            await changes.flush(session)
    assert [e.type for e in raised] == ["task.escalated"]
    assert raised[0].data["leg_ids"] == [str(task.legs[0].leg_id)]
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org)  # far away: manual only
        leg = await assign_by_hand(
            session, leg_id=task.legs[0].leg_id, volunteer_id=v.id, organisation_id=org, policy=POLICY
        )
        assert leg.status == "assigned"
        assert (await outbox_types(session, task.task_id))[-1] == "leg.assigned"


async def test_hand_assignment_is_scoped_to_the_operators_organisation(
    sessionmaker: Maker, place: tuple[float, float]
) -> None:
    lat, lon = place
    org, other = uuid.uuid4(), uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        mine = await add_volunteer(session, lat=lat, lon=lon, organisation_id=org)
        theirs = await add_volunteer(session, lat=lat, lon=lon, organisation_id=other)
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
    leg_id = task.legs[0].leg_id
    for leg, volunteer, organisation in ((leg_id, theirs.id, org), (leg_id, mine.id, other)):
        async with sessionmaker() as session, session.begin():
            with pytest.raises(NotFound):
                await assign_by_hand(
                    session, leg_id=leg, volunteer_id=volunteer, organisation_id=organisation, policy=POLICY
                )


async def test_hand_assignment_withdraws_the_live_offer_of_another_volunteer(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        offered = await add_volunteer(session, lat=lat, lon=lon, organisation_id=org)
        chosen = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org)
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offer = (await offers_for(session, [leg_id]))[leg_id]
    assert offer.volunteer_id == offered.id
    async with sessionmaker() as session, session.begin():
        await assign_by_hand(
            session, leg_id=leg_id, volunteer_id=chosen.id, organisation_id=org, policy=POLICY
        )
    async with sessionmaker() as session, session.begin():
        with pytest.raises(Conflict):
            await accept_offer(session, offer_id=offer.id, volunteer_id=offered.id)
    async with sessionmaker() as session:
        view = await assignments(session, volunteer_id=offered.id, data_key=stack.settings().data_key)
        assert view == {"offers": [], "legs": []}
        assert (await session.get(VolunteerRow, chosen.id)).active_legs == 1  # type: ignore[union-attr]


async def test_cancelled_task_withdraws_offers_and_releases_legs_not_yet_picked_up(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    key = stack.settings().data_key
    async with sessionmaker() as session, session.begin():
        vols = [
            await add_volunteer(session, lat=lat, lon=lon, organisation_id=org, max_active_legs=1)
            for _ in range(3)
        ]
        task = await submit_task(session, lat=lat, lon=lon, legs=3, organisation_id=org)
    leg_ids = [leg.leg_id for leg in task.legs]
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offers = await offers_for(session, leg_ids)
    assert len(offers) == 3
    first, second, third = (offers[leg_id] for leg_id in leg_ids)
    for offer in (second, third):
        async with sessionmaker() as session, session.begin():
            await accept_offer(session, offer_id=offer.id, volunteer_id=offer.volunteer_id)
    async with sessionmaker() as session, session.begin():
        await report_picked_up(session, leg_id=third.leg_id, volunteer_id=third.volunteer_id)

    _, event = build_event(
        TaskCancelled(task_id=task.task_id, organisation_id=org, reason="no longer needed"),
        source="/intake",
        subject=task.task_id,
    )
    async with sessionmaker() as session, session.begin():
        await cancel_task(session, event)
    async with sessionmaker() as session:
        statuses = {
            leg.id: leg.status
            for leg in (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars()
        }
        assert statuses == {first.leg_id: "cancelled", second.leg_id: "cancelled", third.leg_id: "picked_up"}
        assert (await session.get(OfferRow, first.id)).status == "withdrawn"  # type: ignore[union-attr]
        loads = {v.id: (await session.get(VolunteerRow, v.id)).active_legs for v in vols}  # type: ignore[union-attr]
        assert loads[second.volunteer_id] == 0 and loads[third.volunteer_id] == 1
        for offer in (first, second):
            view = await assignments(session, volunteer_id=offer.volunteer_id, data_key=key)
            assert view == {"offers": [], "legs": []}
        assert len((await assignments(session, volunteer_id=third.volunteer_id, data_key=key))["legs"]) == 1
    async with sessionmaker() as session, session.begin():
        with pytest.raises(Conflict):
            await accept_offer(session, offer_id=first.id, volunteer_id=first.volunteer_id)


async def test_problem_hands_the_leg_back_and_the_next_batch_asks_someone_else(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        near = await add_volunteer(session, lat=lat, lon=lon)
        farther = await add_volunteer(session, lat=lat + 0.01, lon=lon)
        task = await submit_task(session, lat=lat, lon=lon)
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session, session.begin():
        offer = (await offers_for(session, [leg_id]))[leg_id]
        assert offer.volunteer_id == near.id
        await accept_offer(session, offer_id=offer.id, volunteer_id=near.id)
    async with sessionmaker() as session, session.begin():
        leg = await report_problem(session, leg_id=leg_id, volunteer_id=near.id, reason="flat tyre")
        assert leg.status == "pending"
        assert (await outbox_types(session, task.task_id))[-1] == "leg.problem_reported"
    async with sessionmaker() as session:
        assert (await session.get(VolunteerRow, near.id)).active_legs == 0  # type: ignore[union-attr]
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert (await offers_for(session, [leg_id]))[leg_id].volunteer_id == farther.id


async def test_a_problem_after_pickup_waits_for_a_decision_escalated_and_is_offered_to_nobody(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        near = await add_volunteer(session, lat=lat, lon=lon)
        await add_volunteer(session, lat=lat + 0.01, lon=lon)
        task = await submit_task(session, lat=lat, lon=lon)
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session, session.begin():
        offer = (await offers_for(session, [leg_id]))[leg_id]
        await accept_offer(session, offer_id=offer.id, volunteer_id=near.id)
        await report_picked_up(session, leg_id=leg_id, volunteer_id=near.id)
    async with sessionmaker() as session, session.begin():
        leg = await report_problem(session, leg_id=leg_id, volunteer_id=near.id, reason="flat tyre")
        assert (leg.status, leg.volunteer_id) == ("needs_decision", near.id), "they still hold the goods"
        assert (await outbox_types(session, task.task_id))[-2:] == ["leg.problem_reported", "task.escalated"]
    async with sessionmaker() as session:
        assert (await session.get(VolunteerRow, near.id)).active_legs == 0  # type: ignore[union-attr]
    assert await matching_round(sessionmaker, stack, ROSTER) == set(), "not re-dispatched from the pickup"


async def test_supply_run_legs_are_offered_together_to_the_volunteer_who_can_carry_them(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        await add_volunteer(
            session, lat=lat, lon=lon, capacity_kg=10.0, max_active_legs=3
        )  # nearest, too small
        car = await add_volunteer(
            session, lat=lat + 0.01, lon=lon, vehicle="car", capacity_kg=80.0, max_active_legs=3
        )
        task = await submit_task(session, lat=lat, lon=lon, legs=3, kind="supply_run", weight_kg=24.0)
    leg_ids = [leg.leg_id for leg in task.legs]
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offers = await offers_for(session, leg_ids)
    assert {offer.volunteer_id for offer in offers.values()} == {car.id} and len(offers) == 3


async def test_expired_offer_goes_to_the_next_nearest_volunteer(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        near = await add_volunteer(session, lat=lat, lon=lon)
        farther = await add_volunteer(session, lat=lat + 0.01, lon=lon)
        task = await submit_task(session, lat=lat, lon=lon)
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session, session.begin():
        offer = (await offers_for(session, [leg_id]))[leg_id]
        assert offer.volunteer_id == near.id
        changes = await expire_offers(session, now=FUTURE + OFFER_TTL)
        assert any(
            e.type == "leg.offer_expired" and e.data["leg_id"] == str(leg_id) for _, e in changes.events
        )
        await changes.flush(session)
    await matching_round(sessionmaker, stack, ROSTER, at=OFFER_TTL)
    async with sessionmaker() as session:
        assert (await offers_for(session, [leg_id]))[leg_id].volunteer_id == farther.id


async def test_a_leg_is_offered_only_to_volunteers_of_its_own_organisation(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    org, other = uuid.uuid4(), uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        stranger = await add_volunteer(session, lat=lat, lon=lon, organisation_id=other)  # at the pickup
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
    leg_id = task.legs[0].leg_id
    assert stranger.id not in await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert await offers_for(session, [leg_id]) == {}, "nobody of the leg's organisation is on duty"
    async with sessionmaker() as session, session.begin():
        own = await add_volunteer(session, lat=lat + 0.01, lon=lon, organisation_id=org)  # about 1 km away
    assert stranger.id not in await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session, session.begin():
        offer = (await offers_for(session, [leg_id]))[leg_id]
        assert offer.volunteer_id == own.id
        await decline_offer(session, offer_id=offer.id, volunteer_id=own.id, reason=None)
    # Declined by the only one who may take it: the leg waits, and is still not offered across.
    assert stranger.id not in await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert await offers_for(session, [leg_id]) == {}
        seen = await assignments(session, volunteer_id=stranger.id, data_key=stack.settings().data_key)
    assert seen == {"offers": [], "legs": []}


async def test_an_offer_across_organisations_is_neither_shown_nor_accepted(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        stranger = await add_volunteer(session, lat=lat, lon=lon, organisation_id=uuid.uuid4())
        task = await submit_task(session, lat=lat, lon=lon)
        # An offer no matching round makes, such as one left from before organisations were kept apart.
        offer = OfferRow(
            id=uuid.uuid4(),
            leg_id=task.legs[0].leg_id,
            volunteer_id=stranger.id,
            status="live",
            distance_m=0.0,
            expires_at=FUTURE + OFFER_TTL,
        )
        session.add(offer)
    async with sessionmaker() as session:
        seen = await assignments(session, volunteer_id=stranger.id, data_key=stack.settings().data_key)
    assert seen == {"offers": [], "legs": []}
    async with sessionmaker() as session, session.begin():
        with pytest.raises(NotFound):
            await accept_offer(session, offer_id=offer.id, volunteer_id=stranger.id)
    async with sessionmaker() as session:
        leg = await session.get(LegRow, task.legs[0].leg_id)
        assert leg is not None and leg.volunteer_id is None


async def test_volunteer_whose_insurance_has_lapsed_gets_no_offer_while_a_covered_one_does(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    today = local_day(FUTURE, ZoneInfo(stack.settings().local_time_zone))
    async with sessionmaker() as session, session.begin():
        lapsed = await add_volunteer(session, lat=lat, lon=lon, insured_until=today - timedelta(days=1))
        covered = await add_volunteer(session, lat=lat + 0.01, lon=lon, insured_until=today)
        task = await submit_task(session, lat=lat, lon=lon)
    leg_id = task.legs[0].leg_id
    offered = await matching_round(sessionmaker, stack, ROSTER)
    assert lapsed.id not in offered
    async with sessionmaker() as session:
        assert (await offers_for(session, [leg_id]))[leg_id].volunteer_id == covered.id
