"""Legs posted ahead on the real database: planned, offered as a route when it is time to set off and
not before, left to the planner by the round until they have been ready a while, accepted like any
route, kept within their organisation, and offered once however many dispatchers plan at once."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import LegRow, OfferRow, RouteRow
from services.dispatcher.domain.geo import haversine_m, travel_time_s
from services.dispatcher.service_layer.escalation import escalate_waiting_legs
from services.dispatcher.service_layer.matcher import policy_from
from services.dispatcher.service_layer.offers import accept_offer, decline_offer, plan_batch
from services.dispatcher.service_layer.roster import Roster
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import (
    FUTURE,
    OFFER_TTL,
    add_volunteer,
    matching_round,
    submit_task,
)

Maker = async_sessionmaker[AsyncSession]
ROSTER = Roster()
AHEAD = timedelta(hours=2)
HOLD = timedelta(minutes=30)
READY = FUTURE + timedelta(minutes=30)  # the lunches are posted half an hour before they are ready


def east(place: tuple[float, float], km: float) -> tuple[float, float]:
    return place[0], place[1] + km / (111.0 * math.cos(math.radians(place[0])))


async def plan(sessionmaker: Maker, stack: Stack, now: datetime, roster: Roster = ROSTER) -> set[uuid.UUID]:
    """One plan at `now`, as the matcher runs it; the volunteers offered a trip."""
    async with sessionmaker() as session, session.begin():
        changes = await plan_batch(
            session,
            roster,
            now=now,
            policy=policy_from(stack.settings()),
            offer_ttl=OFFER_TTL,
            ahead=AHEAD,
            planned_for=HOLD,
        )
        offered = set(changes.volunteers)
        await changes.flush(session)
    return offered


async def lunches(session: AsyncSession, place: tuple[float, float], n: int, **kw: object) -> list[uuid.UUID]:
    """`n` lunches from the kitchen at `place`, ready at READY (unless said), due 45 minutes later."""
    ready: datetime = kw.pop("ready_at", READY)  # type: ignore[assignment]
    tasks = [
        await submit_task(
            session,
            lat=place[0],
            lon=place[1],
            weight_kg=0.6,
            ready_at=ready,
            deliver_by=ready + timedelta(minutes=45),
            **kw,  # type: ignore[arg-type]
        )
        for _ in range(n)
    ]
    return [task.legs[0].leg_id for task in tasks]


async def live_offers(session: AsyncSession, leg_ids: list[uuid.UUID]) -> list[OfferRow]:
    rows = await session.execute(
        select(OfferRow).where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == "live")
    )
    return list(rows.scalars())


def set_off_from(
    place: tuple[float, float], kitchen: tuple[float, float], vehicle: str = "bicycle"
) -> datetime:
    """When a volunteer at `place` must set off to be at the kitchen as the lunches are ready."""
    return READY - timedelta(seconds=travel_time_s(haversine_m(*place, *kitchen), vehicle))


async def test_lunches_posted_ahead_are_offered_as_one_route_when_it_is_time_to_set_off(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    home = east(place, -2.0)
    set_off = set_off_from(home, place)
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(
            session, lat=home[0], lon=home[1], max_active_legs=4, location_at=set_off - timedelta(minutes=1)
        )
        leg_ids = await lunches(session, place, 3)
    assert await plan(sessionmaker, stack, FUTURE) == set()  # known half an hour ahead: too soon
    assert await plan(sessionmaker, stack, set_off - timedelta(minutes=2)) == set()
    assert await plan(sessionmaker, stack, set_off) == {rider.id}
    async with sessionmaker() as session:
        offers = await live_offers(session, leg_ids)
        assert len(offers) == 3 and {o.volunteer_id for o in offers} == {rider.id}
        (route_id,) = {o.route_id for o in offers}
        route = await session.get(RouteRow, route_id)
        assert route is not None and route.status == "offered"
        stops = route.stops
    assert [s["kind"] for s in stops] == ["pickup"] * 3 + ["dropoff"] * 3
    assert all(datetime.fromisoformat(s["eta"]) >= READY for s in stops)
    assert all(datetime.fromisoformat(s["eta"]) <= READY + timedelta(minutes=45) for s in stops)
    # Accepted whole before the lunches are even ready: the volunteer is on the way.
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offers[0].id, volunteer_id=rider.id)
    async with sessionmaker() as session:
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars().all()
        assert {leg.status for leg in legs} == {"assigned"} and {leg.volunteer_id for leg in legs} == {
            rider.id
        }


async def test_the_round_leaves_a_leg_posted_ahead_to_the_planner_until_it_has_been_ready_a_while(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(session, lat=place[0], lon=place[1], location_at=READY + HOLD)
        (posted,) = await lunches(session, place, 1)
        # Posted when it was ready: the round's at once, as before.
        (now_ready,) = await lunches(
            session, east(place, 0.1), 1, ready_at=READY, submitted_at=READY + timedelta(seconds=1)
        )
    assert await matching_round(
        sessionmaker, stack, ROSTER, at=READY - FUTURE + timedelta(minutes=1), planned_for=HOLD
    ) == {rider.id}
    async with sessionmaker() as session:
        (offer,) = await live_offers(session, [posted, now_ready])
        assert offer.leg_id == now_ready
    async with sessionmaker() as session, session.begin():
        await decline_offer(session, offer_id=offer.id, volunteer_id=rider.id, reason=None)
    # Ready for the whole hold and not planned (say the planner was down): the round takes it.
    assert await matching_round(sessionmaker, stack, ROSTER, at=READY - FUTURE + HOLD, planned_for=HOLD) == {
        rider.id
    }
    async with sessionmaker() as session:
        assert [o.leg_id for o in await live_offers(session, [posted])] == [posted]


async def test_a_planned_leg_goes_only_to_its_own_organisations_volunteers(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    set_off = set_off_from(place, place)
    elsewhere = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        await add_volunteer(
            session, lat=place[0], lon=place[1], organisation_id=elsewhere, location_at=set_off
        )
        leg_ids = await lunches(session, place, 2)
    assert await plan(sessionmaker, stack, set_off) == set()
    async with sessionmaker() as session:
        assert await live_offers(session, leg_ids) == []


@pytest.mark.parametrize("dispatchers", [2, 3])
async def test_dispatchers_planning_at_once_offer_each_leg_once(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float], dispatchers: int
) -> None:
    set_off = READY - timedelta(minutes=1)  # late for every one of them: all set off at once
    async with sessionmaker() as session, session.begin():
        for i in range(4):
            spot = east(place, -1.0 + 0.05 * i)
            await add_volunteer(session, lat=spot[0], lon=spot[1], max_active_legs=3, location_at=set_off)
        leg_ids = await lunches(session, place, 8)
    # Each its own roster, as each dispatcher process has.
    await asyncio.gather(*(plan(sessionmaker, stack, set_off, Roster()) for _ in range(dispatchers)))
    async with sessionmaker() as session:
        offers = await live_offers(session, leg_ids)
        routes = (
            (await session.execute(select(LegRow.route_id).where(LegRow.id.in_(leg_ids)))).scalars().all()
        )
    assert offers, "one of them planned"
    assert max(Counter(o.leg_id for o in offers).values()) == 1
    by_route = Counter(o.route_id for o in offers)
    assert all(o.route_id is not None for o in offers) and len(set(routes) - {None}) == len(by_route)


async def test_a_leg_posted_ahead_waits_from_when_it_is_ready_before_it_escalates(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    settings = stack.settings()
    async with sessionmaker() as session, session.begin():
        task = await submit_task(
            session, lat=place[0], lon=place[1], ready_at=READY, deliver_by=READY + timedelta(minutes=45)
        )
    task_id = task.task_id

    async def escalated(now: datetime) -> bool:
        async with sessionmaker() as session, session.begin():
            changes = await escalate_waiting_legs(
                session,
                now=now,
                wait_limit_s=settings.escalation_wait_s,
                deadline_margin_s=settings.escalation_deadline_margin_s,
                limit=100_000,  # the suite's database holds many other waiting legs
            )
            raised = any(e.subject == str(task_id) for _, e in changes.events)
            await changes.flush(session)
        return raised

    # Posted half an hour before it is ready: not "waited too long" the moment it is ready.
    assert not await escalated(READY + timedelta(seconds=1))
    assert await escalated(READY + timedelta(seconds=settings.escalation_wait_s))
