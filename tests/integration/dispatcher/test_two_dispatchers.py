"""Two dispatcher processes on one consumer group and one database, under concurrent load."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import LegRow, OfferRow, RouteRow, VolunteerRow
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, leg_arrives, somewhere

pytestmark = pytest.mark.e2e
Maker = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module")
async def second_dispatcher(
    stack: Stack, system: ServiceProcesses, sessionmaker: Maker
) -> AsyncIterator[ServiceProcesses]:
    extra = ServiceProcesses(env=system.env)
    extra.start("dispatcher")
    try:
        await asyncio.to_thread(extra.wait_ready, services=("dispatcher",), timeout_s=60)
        yield extra
    finally:
        await asyncio.to_thread(extra.stop_all)
    # The consumer group rebalances back to the first process: wait until it takes tasks in again,
    # so the tests after these find the system as they expect it.
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        probe = await Client(http, system, tokens["admin_token"]).task(tokens["operator_token"], somewhere())
    await leg_arrives(sessionmaker, probe["legs"][0]["id"])


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def test_a_change_made_in_one_process_wakes_a_poll_waiting_in_the_other(
    client: Client, second_dispatcher: ServiceProcesses, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    task = await client.task(operator, (place[0] + 40, place[1]))  # nobody near: only a hand assignment
    leg_id = task["legs"][0]["id"]
    await leg_arrives(sessionmaker, leg_id)
    _, _, etag = await client.poll(token)
    poll = asyncio.create_task(client.poll(token, etag=etag, wait=30))
    await asyncio.sleep(0.3)
    assert not poll.done()
    started = time.monotonic()
    status, _ = await client.call(
        "POST",
        f"{second_dispatcher.url('dispatcher')}/v1/legs/{leg_id}/assign",
        operator,
        json={"volunteer_id": volunteer_id},
    )
    assert status == 200
    status, body, _ = await poll
    print(
        f"cross-process wake-up answered {1000 * (time.monotonic() - started):.0f} ms after the assign call"
    )
    assert status == 200 and [leg["id"] for leg in body["legs"]] == [leg_id]


async def test_two_dispatchers_never_double_assign_under_concurrent_load(
    client: Client, second_dispatcher: ServiceProcesses, sessionmaker: Maker
) -> None:
    rng = random.Random(4)
    operator = await client.organisation()
    lat, lon = somewhere()

    def near() -> tuple[float, float]:
        return lat + rng.uniform(-0.01, 0.01), lon + rng.uniform(-0.01, 0.01)

    bases = [client.dispatcher, second_dispatcher.url("dispatcher")]
    volunteers = [
        await client.volunteer(operator, near(), max_active_legs=rng.choice([1, 2, 3]), capacity_kg=30)
        for _ in range(12)
    ]
    tasks = await asyncio.gather(
        *(
            client.task(
                operator, near(), dropoffs=rng.choice([1, 1, 2, 3]), kind=rng.choice(["errand", "supply_run"])
            )
            for _ in range(16)
        )
    )
    codes = {leg["id"]: leg["confirmation_code"] for task in tasks for leg in task["legs"]}
    races: list[tuple[int, ...]] = []
    stop = asyncio.Event()

    async def volunteer_app(token: str, seed: int) -> None:
        app_rng = random.Random(seed)
        etag = None
        while not stop.is_set():
            _, body, etag = await client.poll(token, etag=etag, wait=2, base=app_rng.choice(bases))
            decided: set[str] = set()
            for offer in body.get("offers", []):
                # One answer per route: accepting or declining one offer answers them all.
                route = (offer.get("route") or {}).get("id") or offer["id"]
                if route in decided:
                    continue
                decided.add(route)
                if app_rng.random() < 0.2:
                    await client.call(
                        "POST", f"{app_rng.choice(bases)}/v1/me/offers/{offer['id']}/decline", token
                    )
                    continue
                # The same accept sent to both processes at once: exactly one may win.
                answers = await asyncio.gather(
                    *(
                        client.call("POST", f"{base}/v1/me/offers/{offer['id']}/accept", token)
                        for base in bases
                    )
                )
                races.append(tuple(sorted(status for status, _ in answers)))
            for leg in body.get("legs", []):
                base = app_rng.choice(bases)
                if leg["status"] == "assigned":
                    await client.call("POST", f"{base}/v1/me/legs/{leg['id']}/picked-up", token)
                elif leg["status"] == "picked_up":
                    await client.call(
                        "POST",
                        f"{base}/v1/me/legs/{leg['id']}/delivered",
                        token,
                        json={"confirmation_code": codes[leg["id"]]},
                    )

    apps = [asyncio.create_task(volunteer_app(token, i)) for i, (_, token) in enumerate(volunteers)]
    leg_ids = [uuid.UUID(leg_id) for leg_id in codes]
    volunteer_ids = [uuid.UUID(volunteer_id) for volunteer_id, _ in volunteers]
    taken = ("assigned", "picked_up", "delivered", "confirmed")
    try:
        for _ in range(600):  # a bound for a broken run, not a speed target
            async with sessionmaker() as session:
                done = await session.scalar(
                    select(func.count()).where(
                        LegRow.id.in_(leg_ids), LegRow.status.in_(("delivered", "confirmed"))
                    )
                )
            if done == len(leg_ids):
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*apps)

    async with sessionmaker() as session:
        live_twice = await session.execute(
            select(OfferRow.leg_id)
            .where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == "live")
            .group_by(OfferRow.leg_id)
            .having(func.count() > 1)
        )
        assert live_twice.all() == []
        accepted = Counter(
            (
                await session.execute(
                    select(OfferRow.leg_id).where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == "accepted")
                )
            ).scalars()
        )
        assert max(accepted.values()) == 1, "no leg was accepted twice"
        legs = {
            leg.id: leg
            for leg in (await session.execute(select(LegRow).where(LegRow.id.in_(leg_ids)))).scalars()
        }
        assert all(leg.status in taken for leg in legs.values()), Counter(leg.status for leg in legs.values())
        in_hand = Counter(
            leg.volunteer_id for leg in legs.values() if leg.status in ("assigned", "picked_up")
        )
        for row in (
            await session.execute(select(VolunteerRow).where(VolunteerRow.id.in_(volunteer_ids)))
        ).scalars():
            assert row.active_legs <= row.max_active_legs
            assert row.active_legs == in_hand[row.id]
        accepted_by = dict(
            (
                await session.execute(
                    select(OfferRow.leg_id, OfferRow.volunteer_id).where(
                        OfferRow.leg_id.in_(leg_ids), OfferRow.status == "accepted"
                    )
                )
            ).all()
        )
        assert all(legs[leg_id].volunteer_id == volunteer for leg_id, volunteer in accepted_by.items())
        # Each leg is on one route at most, and that route is its holder's.
        holders = dict(
            (
                await session.execute(
                    select(RouteRow.id, RouteRow.volunteer_id).where(
                        RouteRow.id.in_({leg.route_id for leg in legs.values() if leg.route_id})
                    )
                )
            ).all()
        )
        assert all(holders[leg.route_id] == leg.volunteer_id for leg in legs.values() if leg.route_id)
        offered_in = (
            await session.execute(
                select(OfferRow.leg_id, OfferRow.route_id, OfferRow.volunteer_id).where(
                    OfferRow.leg_id.in_(leg_ids), OfferRow.route_id.is_not(None)
                )
            )
        ).all()
        assert offered_in, "the offers were routes"
        routes_of_volunteer: dict[uuid.UUID, set[uuid.UUID]] = {}
        for _, route_id, volunteer in offered_in:
            if route_id is not None:
                routes_of_volunteer.setdefault(route_id, set()).add(volunteer)
        assert all(len(v) == 1 for v in routes_of_volunteer.values()), "a route is one volunteer's"
    assert races and set(races) == {(200, 409)}, Counter(races)


async def test_stopping_dispatcher_answers_its_waiting_polls_at_once(
    client: Client, second_dispatcher: ServiceProcesses
) -> None:
    operator = await client.organisation()
    _, token = await client.volunteer(operator, somewhere())
    base = second_dispatcher.url("dispatcher")
    _, _, etag = await client.poll(token, base=base)
    poll = asyncio.create_task(client.poll(token, etag=etag, wait=60, base=base))
    await asyncio.sleep(0.5)
    assert not poll.done()
    stopping = asyncio.create_task(asyncio.to_thread(second_dispatcher.stop, "dispatcher"))
    status, _, answered_etag = await poll
    assert (status, answered_etag) == (304, etag)
    assert await stopping == 0
