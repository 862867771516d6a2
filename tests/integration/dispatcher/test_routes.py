"""Routes on the real database: offered whole, accepted whole, declined whole, grown by insertion,
shrunk by a cancellation, and never one leg in two routes however many rounds run at once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow, OfferRow, RejectionRow, RouteRow, VolunteerRow, outbox
from services.dispatcher.domain import matching, routing
from services.dispatcher.domain.errors import OfferClosed
from services.dispatcher.service_layer.deliveries import report_picked_up
from services.dispatcher.service_layer.legs import cancel_task
from services.dispatcher.service_layer.matcher import policy_from
from services.dispatcher.service_layer.offers import accept_offer, decline_offer, offer_batch, prepare_pool
from services.dispatcher.service_layer.roster import Roster
from services.dispatcher.service_layer.views import assignments
from shared.events import CloudEvent, TaskCancelled, build_event
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


@pytest.fixture(autouse=True)
def time_enough_to_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rounds here run in this process: their routing's wall-clock box is opened wide, so a busy
    machine does not leave a route out of what the tests expect."""
    monkeypatch.setattr(matching, "ROUTING_BUDGET_S", 10.0)
    monkeypatch.setattr(routing, "PLAN_BUDGET_S", 1.0)


async def live_offers(session: AsyncSession, leg_ids: list[uuid.UUID]) -> list[OfferRow]:
    rows = await session.execute(
        select(OfferRow).where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == "live")
    )
    return list(rows.scalars())


async def lunches(
    session: AsyncSession, lat: float, lon: float, n: int, *, deliver_by: datetime | None = None
) -> list[uuid.UUID]:
    """`n` one-leg tasks from one kitchen at (lat, lon)."""
    tasks = [
        await submit_task(session, lat=lat, lon=lon, weight_kg=0.5, deliver_by=deliver_by) for _ in range(n)
    ]
    return [task.legs[0].leg_id for task in tasks]


async def rider_on_a_route(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> tuple[VolunteerRow, uuid.UUID, uuid.UUID]:
    """A rider at `place` who accepted a route with one lunch from there, due in an hour and more:
    the rider, the lunch's leg and the route."""
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=3)
        (first,) = await lunches(session, lat, lon, 1, deliver_by=FUTURE + timedelta(hours=1))
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        (offer,) = await live_offers(session, [first])
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offer.id, volunteer_id=rider.id)
    assert offer.route_id is not None
    return rider, first, offer.route_id


def in_order(stops: list[dict[str, object]]) -> bool:
    """Every pickup before its drop-off."""
    seen: set[object] = set()
    for stop in stops:
        if stop["kind"] == "pickup":
            seen.add(stop["leg_id"])
        elif stop["leg_id"] not in seen and any(
            s["leg_id"] == stop["leg_id"] and s["kind"] == "pickup" for s in stops
        ):
            return False
    return True


async def test_a_route_is_offered_to_one_volunteer_accepted_whole_and_each_leg_goes_its_own_way(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    key = stack.settings().data_key
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=5)
        await add_volunteer(session, lat=lat + 0.005, lon=lon, max_active_legs=1)
        leg_ids = await lunches(session, lat, lon, 3)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offers = await live_offers(session, leg_ids)
        assert len(offers) == 3 and {o.volunteer_id for o in offers} == {rider.id}
        (route_id,) = {o.route_id for o in offers}
        assert route_id is not None
        route = await session.get(RouteRow, route_id)
        assert route is not None and route.status == "offered" and route.volunteer_id == rider.id
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars().all()
        assert {leg.route_id for leg in legs} == {route_id}
        view = await assignments(session, volunteer_id=rider.id, data_key=key)
    assert len(view["offers"]) == 3
    shown = view["offers"][0]["route"]
    assert shown["id"] == str(route_id) and len(shown["stops"]) == 6 and in_order(shown["stops"])
    assert {s["leg_id"] for s in shown["stops"]} == {str(leg_id) for leg_id in leg_ids}
    assert all(offer["route"] == shown for offer in view["offers"])

    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offers[0].id, volunteer_id=rider.id)
        # Queued in this transaction: one `leg.assigned` per leg, each naming the route.
        raw = (
            await session.execute(select(outbox.c.payload).where(outbox.c.event_type == "leg.assigned"))
        ).scalars()
        assigned = [CloudEvent.from_bytes(payload).data for payload in raw]
    mine = [data for data in assigned if data["leg_id"] in {str(leg_id) for leg_id in leg_ids}]
    assert len(mine) == 3 and all(data["route_id"] == str(route_id) for data in mine)
    async with sessionmaker() as session:
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars().all()
        assert {(leg.status, leg.volunteer_id, leg.route_id) for leg in legs} == {
            ("assigned", rider.id, route_id)
        }
        assert (await session.get(VolunteerRow, rider.id)).active_legs == 3  # type: ignore[union-attr]
        assert (await session.get(RouteRow, route_id)).status == "active"  # type: ignore[union-attr]
        assert await live_offers(session, leg_ids) == []

    # Each leg is picked up on its own; the route shows what is still to do.
    async with sessionmaker() as session, session.begin():
        await report_picked_up(session, leg_id=leg_ids[0], volunteer_id=rider.id)
    async with sessionmaker() as session:
        view = await assignments(session, volunteer_id=rider.id, data_key=key)
    assert view["offers"] == [] and len(view["legs"]) == 3
    route_shown = view["legs"][0]["route"]
    assert all(leg["route"] == route_shown for leg in view["legs"])
    assert len(route_shown["stops"]) == 5
    assert (str(leg_ids[0]), "pickup") not in {(s["leg_id"], s["kind"]) for s in route_shown["stops"]}


async def test_declining_a_route_returns_every_leg(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        first = await add_volunteer(session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=5)
        leg_ids = await lunches(session, lat, lon, 3)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offers = await live_offers(session, leg_ids)
    assert len(offers) == 3
    route_id = offers[0].route_id
    async with sessionmaker() as session, session.begin():
        await decline_offer(session, offer_id=offers[1].id, volunteer_id=first.id, reason="too many")
    async with sessionmaker() as session:
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars().all()
        assert {(leg.status, leg.route_id) for leg in legs} == {("pending", None)}
        statuses = Counter(
            (await session.execute(select(OfferRow.status).where(OfferRow.route_id == route_id))).scalars()
        )
        assert statuses == Counter({"declined": 3})
        assert (await session.get(RouteRow, route_id)).status == "ended"  # type: ignore[union-attr]
        rejected = (
            await session.execute(select(RejectionRow.leg_id).where(RejectionRow.volunteer_id == first.id))
        ).scalars()
        assert set(rejected) == set(leg_ids)
    # The next round asks someone else, the whole route again.
    async with sessionmaker() as session, session.begin():
        second = await add_volunteer(session, lat=lat, lon=lon + 0.002, vehicle="ebike", max_active_legs=5)
    await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=5))
    async with sessionmaker() as session:
        again = await live_offers(session, leg_ids)
    assert {o.volunteer_id for o in again} == {second.id} and len(again) == 3
    assert len({o.route_id for o in again}) == 1 and again[0].route_id != route_id


async def test_a_new_leg_is_inserted_into_the_accepted_route_as_an_offer_of_its_own(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    key = stack.settings().data_key
    rider, first, route_id = await rider_on_a_route(sessionmaker, stack, place)
    # Another lunch from the same kitchen, now.
    async with sessionmaker() as session, session.begin():
        (second,) = await lunches(session, lat, lon, 1)
    await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=5))
    async with sessionmaker() as session:
        (inserted,) = await live_offers(session, [second])
        assert inserted.volunteer_id == rider.id and inserted.route_id == route_id
        view = await assignments(session, volunteer_id=rider.id, data_key=key)
        route = await session.get(RouteRow, route_id)
        assert route is not None and len(route.stops) == 2  # unchanged until accepted
    (offered,) = view["offers"]
    assert offered["leg"]["id"] == str(second) and offered["route"]["id"] == str(route_id)
    assert len(offered["route"]["stops"]) == 4 and in_order(offered["route"]["stops"])
    assert len(view["legs"][0]["route"]["stops"]) == 2
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=inserted.id, volunteer_id=rider.id)
    async with sessionmaker() as session:
        route = await session.get(RouteRow, route_id)
        assert route is not None and route.status == "active" and len(route.stops) == 4
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_([first, second])))).scalars().all()
        assert {(leg.status, leg.route_id) for leg in legs} == {("assigned", route_id)}
        # The first lunch still arrives by its deadline.
        due = (FUTURE + timedelta(hours=1)).isoformat()
        first_drop = next(s for s in route.stops if s["leg_id"] == str(first) and s["kind"] == "dropoff")
        assert first_drop["eta"] <= due


@pytest.mark.parametrize(("due_in", "inserted"), [(timedelta(minutes=15), False), (timedelta(hours=3), True)])
async def test_a_leg_that_would_make_an_accepted_stop_late_is_not_inserted(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float], due_in: timedelta, inserted: bool
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(session, lat=lat, lon=lon, vehicle="bicycle", max_active_legs=3)
        # Its drop-off is about 1.5 km away: some 10 minutes by bicycle with the stops.
        (first,) = await lunches(session, lat, lon, 1, deliver_by=FUTURE + due_in)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        (offer,) = await live_offers(session, [first])
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offer.id, volunteer_id=rider.id)
    # A lunch from a kitchen 2 km the other way, due in 25 minutes (some 22 minutes' ride on its
    # own): before the first drop-off it makes that late when the first is due in 15; after it
    # (over 35 minutes in), it is itself late.
    async with sessionmaker() as session, session.begin():
        (far,) = await lunches(session, lat - 0.018, lon, 1, deliver_by=FUTURE + timedelta(minutes=25))
    await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=5))
    async with sessionmaker() as session:
        offered = await live_offers(session, [far])
    assert [(o.volunteer_id, o.route_id) for o in offered] == (
        [(rider.id, offer.route_id)] if inserted else []
    )


async def test_a_cancelled_leg_leaves_the_route_and_the_rest_is_planned_again(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    key = stack.settings().data_key
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(
            session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=5, organisation_id=org
        )
        tasks = [
            await submit_task(session, lat=lat, lon=lon, weight_kg=0.5, organisation_id=org) for _ in range(3)
        ]
    leg_ids = [task.legs[0].leg_id for task in tasks]
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offers = await live_offers(session, leg_ids)
    assert len(offers) == 3
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offers[0].id, volunteer_id=rider.id)
    route_id = offers[0].route_id
    _, event = build_event(
        TaskCancelled(task_id=tasks[1].task_id, organisation_id=org, reason="no longer needed"),
        source="/intake",
        subject=tasks[1].task_id,
    )
    async with sessionmaker() as session, session.begin():
        await cancel_task(session, event)
    async with sessionmaker() as session:
        route = await session.get(RouteRow, route_id)
        assert route is not None and route.status == "active"
        assert {s["leg_id"] for s in route.stops} == {str(leg_ids[0]), str(leg_ids[2])}
        assert len(route.stops) == 4
        cancelled = await session.get(LegRow, leg_ids[1])
        assert cancelled is not None and (cancelled.status, cancelled.route_id) == ("cancelled", None)
        assert (await session.get(VolunteerRow, rider.id)).active_legs == 2  # type: ignore[union-attr]
        view = await assignments(session, volunteer_id=rider.id, data_key=key)
    assert len(view["legs"]) == 2
    assert {s["leg_id"] for s in view["legs"][0]["route"]["stops"]} == {str(leg_ids[0]), str(leg_ids[2])}


async def test_rounds_running_at_once_never_offer_one_leg_in_two_routes(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    """Two replicas' rounds, each in its own transaction at the same moment, over the same legs."""
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        for i in range(8):
            await add_volunteer(
                session, lat=lat + 0.001 * i, lon=lon, vehicle="ebike", max_active_legs=4, capacity_kg=10
            )
        leg_ids = []
        for k in range(4):  # four kitchens, five lunches each
            leg_ids += await lunches(session, lat + 0.002 * k, lon + 0.002 * k, 5)
    now, policy = FUTURE + timedelta(seconds=1), policy_from(stack.settings())

    async def one_round(roster: Roster) -> None:
        async with sessionmaker() as session, session.begin():
            pool = await prepare_pool(session, roster, now=now, policy=policy)
        if pool is None:
            return  # every leg is offered already
        async with sessionmaker() as session, session.begin():
            changes = await offer_batch(session, now=now, policy=policy, offer_ttl=OFFER_TTL, pool=pool)
            await changes.flush(session)

    for _ in range(3):
        await asyncio.gather(one_round(Roster()), one_round(Roster()))
    async with sessionmaker() as session:
        offers = await live_offers(session, leg_ids)
        assert len({o.leg_id for o in offers}) == len(offers), "one live offer per leg"
        assert len(offers) >= 8
        legs = {
            leg.id: leg
            for leg in (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars()
        }
        routes = {
            r.id: r
            for r in (
                await session.execute(select(RouteRow).where(RouteRow.id.in_({o.route_id for o in offers})))
            ).scalars()
        }
        for o in offers:
            assert legs[o.leg_id].route_id == o.route_id
            route = routes[o.route_id]  # type: ignore[index]
            assert route.volunteer_id == o.volunteer_id
        # Every route's stops are its own legs' only: no leg's stops in two routes.
        owner: dict[str, uuid.UUID] = {}
        for route in routes.values():
            for stop in route.stops:
                assert owner.setdefault(stop["leg_id"], route.id) == route.id
        per_volunteer = Counter(o.volunteer_id for o in offers)
        for row in (
            await session.execute(select(VolunteerRow).where(VolunteerRow.id.in_(per_volunteer)))
        ).scalars():
            assert per_volunteer[row.id] <= row.max_active_legs
        assert (
            await session.scalar(
                select(func.count())
                .select_from(RouteRow)
                .where(RouteRow.id.in_(routes), RouteRow.status != "offered")
            )
            == 0
        )


async def test_two_offers_of_one_route_accepted_at_once_take_the_route_once(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=5)
        leg_ids = await lunches(session, lat, lon, 4)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offers = sorted(await live_offers(session, leg_ids), key=lambda o: o.leg_id)
    assert len(offers) == 4 and len({o.route_id for o in offers}) == 1

    async def accept(offer: OfferRow) -> str:
        try:
            async with sessionmaker() as session, session.begin():
                await accept_offer(session, offer_id=offer.id, volunteer_id=rider.id)
        except OfferClosed:
            return "closed"
        return "accepted"

    # The last and the first: opposite ends of the route's lock order.
    answers = await asyncio.gather(accept(offers[-1]), accept(offers[0]))
    assert sorted(answers) == ["accepted", "closed"]
    async with sessionmaker() as session:
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars().all()
        assert {(leg.status, leg.volunteer_id) for leg in legs} == {("assigned", rider.id)}
        assert (await session.get(VolunteerRow, rider.id)).active_legs == 4  # type: ignore[union-attr]


async def test_two_legs_offered_for_insertion_are_answered_one_by_one(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=3)
        (first,) = await lunches(session, lat, lon, 1)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        (offer,) = await live_offers(session, [first])
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offer.id, volunteer_id=rider.id)
    inserted = []
    for round_no in (1, 2):  # one leg per volunteer per round: two rounds, two offers
        async with sessionmaker() as session, session.begin():
            (more,) = await lunches(session, lat, lon, 1)
        await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=5 * round_no))
        async with sessionmaker() as session:
            (one,) = await live_offers(session, [more])
        assert one.route_id == offer.route_id
        inserted.append(one)
    async with sessionmaker() as session, session.begin():
        await decline_offer(session, offer_id=inserted[0].id, volunteer_id=rider.id, reason=None)
    async with sessionmaker() as session:
        assert [o.id for o in await live_offers(session, [inserted[1].leg_id])] == [inserted[1].id]
        route = await session.get(RouteRow, offer.route_id)
        assert route is not None and route.status == "active" and len(route.stops) == 2
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=inserted[1].id, volunteer_id=rider.id)
    async with sessionmaker() as session:
        ids = [first, inserted[0].leg_id, inserted[1].leg_id]
        legs = (await session.execute(select(LegRow).where(LegRow.id.in_(ids)))).scalars()
        assert {leg.id: (leg.status, leg.route_id) for leg in legs} == {
            first: ("assigned", offer.route_id),
            inserted[0].leg_id: ("pending", None),
            inserted[1].leg_id: ("assigned", offer.route_id),
        }


async def test_two_legs_from_the_kitchen_go_into_the_accepted_route_in_one_round(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        rider = await add_volunteer(session, lat=lat, lon=lon, vehicle="ebike", max_active_legs=3)
        (first,) = await lunches(session, lat, lon, 1)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        (offer,) = await live_offers(session, [first])
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offer.id, volunteer_id=rider.id)
        more = await lunches(session, lat, lon, 2)
    await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=5))
    async with sessionmaker() as session:
        both = await live_offers(session, more)
    assert len(both) == 2 and {o.route_id for o in both} == {offer.route_id}
    assert {o.volunteer_id for o in both} == {rider.id}
    # Offers to insert into an accepted route are answered one by one.
    for one in both:
        async with sessionmaker() as session, session.begin():
            await accept_offer(session, offer_id=one.id, volunteer_id=rider.id)
    async with sessionmaker() as session:
        route = await session.get(RouteRow, offer.route_id)
        assert route is not None and route.status == "active"
        assert {stop["leg_id"] for stop in route.stops} == {str(first), *(str(leg_id) for leg_id in more)}
        assert len(route.stops) == 6 and in_order(route.stops)


async def test_an_answer_and_a_problem_report_on_one_route_at_once_wait_for_each_other_not_deadlock(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    rider, _, route_id = await rider_on_a_route(sessionmaker, stack, place)
    async with sessionmaker() as session, session.begin():
        (second,) = await lunches(session, lat, lon, 1)
    await matching_round(sessionmaker, stack, ROSTER, at=timedelta(seconds=5))
    async with sessionmaker() as session:
        (inserted,) = await live_offers(session, [second])
    assert inserted.route_id == route_id

    async def accept() -> None:
        async with sessionmaker() as session, session.begin():
            await accept_offer(session, offer_id=inserted.id, volunteer_id=rider.id)

    # A problem report on the first lunch takes its leg, then its route, then the volunteer's count
    # (`deliveries.report_problem`); here it has the route when the answer to the insertion comes.
    async with sessionmaker() as report, report.begin():
        await repository.lock_route(report, route_id)
        answering = asyncio.create_task(accept())
        for _ in range(200):  # until the answer waits on a lock (a bound, not a speed target)
            # A transaction of its own each time: pg_stat_activity is read once per transaction.
            async with sessionmaker() as probe:
                waiting = await probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%FROM dispatch.routes%FOR UPDATE%'"
                    )
                )
            if waiting or answering.done():
                break
            await asyncio.sleep(0.05)
        if answering.done():
            answering.result()  # its own error, if it failed
        assert waiting, "the answer did not wait for the route"
        await repository.change_load(report, rider.id, active=0)
    await answering
    async with sessionmaker() as session:
        leg = await session.get(LegRow, second)
        assert leg is not None and (leg.status, leg.volunteer_id) == ("assigned", rider.id)
