"""Routes keep to one organisation: a leg is never inserted into, nor bundled with, nor offered in the
route of a volunteer of another organisation, however near they are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import LegRow, OfferRow, RouteRow
from services.dispatcher.domain import matching, routing
from services.dispatcher.service_layer.offers import accept_offer, expire_offers
from services.dispatcher.service_layer.roster import Roster
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import add_volunteer, matching_round, submit_task

Maker = async_sessionmaker[AsyncSession]
ROSTER = Roster()


@pytest.fixture(autouse=True)
def time_enough_to_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matching, "ROUTING_BUDGET_S", 10.0)
    monkeypatch.setattr(routing, "PLAN_BUDGET_S", 1.0)


async def live_offers(session: AsyncSession, leg_ids: list[uuid.UUID]) -> list[OfferRow]:
    rows = await session.execute(
        select(OfferRow).where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == "live")
    )
    return list(rows.scalars())


async def lunches(
    session: AsyncSession, lat: float, lon: float, n: int, organisation_id: uuid.UUID
) -> list[uuid.UUID]:
    tasks = [
        await submit_task(session, lat=lat, lon=lon, weight_kg=0.5, organisation_id=organisation_id)
        for _ in range(n)
    ]
    return [task.legs[0].leg_id for task in tasks]


async def test_another_organisations_leg_is_never_inserted_into_an_accepted_route(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(
            session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=5, organisation_id=theirs
        )
        (first,) = await lunches(session, lat, lon, 1, theirs)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        (offer,) = await live_offers(session, [first])
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offer.id, volunteer_id=rider.id)
    # Lunches of another organisation from the very same kitchen, with nobody of theirs on duty, and
    # one of the rider's own: only that one joins the rider's route.
    async with sessionmaker() as session, session.begin():
        others = await lunches(session, lat, lon, 3, ours)
        (own,) = await lunches(session, lat, lon, 1, theirs)
    await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=5))
    async with sessionmaker() as session:
        assert await live_offers(session, others) == []
        (inserted,) = await live_offers(session, [own])
        assert inserted.volunteer_id == rider.id and inserted.route_id == offer.route_id
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_(others)))).scalars().all()
        assert {(leg.status, leg.route_id, leg.volunteer_id) for leg in legs} == {("pending", None, None)}
        route = await session.get(RouteRow, offer.route_id)
        assert route is not None and route.organisation_id == theirs
        assert {stop["leg_id"] for stop in route.stops} == {str(first)}


async def test_legs_of_two_organisations_at_one_kitchen_are_bundled_each_with_its_own(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    first_org, second_org = uuid.uuid4(), uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        riders = {
            org: await add_volunteer(
                session, lat=lat, lon=lon + delta, vehicle="ebike", max_active_legs=5, organisation_id=org
            )
            for org, delta in ((first_org, 0.0), (second_org, 0.001))
        }
        legs = {org: await lunches(session, lat, lon, 3, org) for org in (first_org, second_org)}
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        for org, leg_ids in legs.items():
            offers = await live_offers(session, leg_ids)
            assert {o.volunteer_id for o in offers} <= {riders[org].id}
            for route_id in {o.route_id for o in offers} - {None}:
                route = await session.get(RouteRow, route_id)
                assert route is not None and route.organisation_id == org
                assert {uuid.UUID(s["leg_id"]) for s in route.stops} <= set(leg_ids)
            assert offers, "each organisation's legs are offered to its own rider"


async def test_a_route_accepted_after_one_of_its_offers_lapsed_holds_only_the_legs_taken(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    """The lapsed offer's leg is not the volunteer's: the accepted route neither plans its stops (nor
    times the others around them) nor keeps it, and the expiry pass returns it as any other."""
    lat, lon = place
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(
            session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=5, organisation_id=org
        )
        leg_ids = await lunches(session, lat, lon, 3, org)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offers = sorted(await live_offers(session, leg_ids), key=lambda o: o.leg_id)
    assert len(offers) == 3 and len({o.route_id for o in offers}) == 1
    lapsed, named = offers[0], offers[1]
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(OfferRow)
            .where(OfferRow.id == lapsed.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=named.id, volunteer_id=rider.id)
    taken = {str(o.leg_id) for o in offers[1:]}
    async with sessionmaker() as session:
        route = await session.get(RouteRow, named.route_id)
        assert route is not None and route.status == "active"
        assert {stop["leg_id"] for stop in route.stops} == taken
        left = await session.get(LegRow, lapsed.leg_id)
        # Not the rider's. (A matcher of a running stack may have offered it again meanwhile.)
        assert left is not None and left.volunteer_id is None and left.status in ("pending", "offered")
    async with sessionmaker() as session, session.begin():
        await expire_offers(session, now=datetime.now(UTC))
    async with sessionmaker() as session:
        route = await session.get(RouteRow, named.route_id)
        assert route is not None and route.status == "active"
        assert {stop["leg_id"] for stop in route.stops} == taken
