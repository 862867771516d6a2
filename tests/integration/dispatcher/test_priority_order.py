"""A matching round takes the most pressing legs first, whatever their arrival and the backlog's size."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.repository import LEGS_CHANNEL, PRESSING_CHANNEL
from services.dispatcher.adapters.tables import LegRow, OfferRow
from services.dispatcher.service_layer.roster import Roster
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import FUTURE, add_volunteer, matching_round, submit_task

Maker = async_sessionmaker[AsyncSession]
ROSTER = Roster()


@asynccontextmanager
async def backlog_held_elsewhere(
    sessionmaker: Maker, *, except_legs: Collection[uuid.UUID]
) -> AsyncIterator[None]:
    """Every other pending leg (other tests' leftovers) locked, as another replica's round would hold
    them: the round under test skips them, so its limit is spent on this test's legs alone."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            select(LegRow.id)
            .where(LegRow.status == "pending", LegRow.id.not_in(list(except_legs)))
            .with_for_update()
        )
        yield


async def offered_legs(sessionmaker: Maker, leg_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(OfferRow.leg_id).where(OfferRow.leg_id.in_(list(leg_ids)), OfferRow.status == "live")
        )
        return set(rows.scalars())


async def round_with_limit(
    sessionmaker: Maker, stack: Stack, legs: Collection[uuid.UUID], *, limit: int
) -> None:
    settings = stack.settings(dispatch_batch_max_legs=limit)
    async with backlog_held_elsewhere(sessionmaker, except_legs=legs):
        await matching_round(sessionmaker, stack, ROSTER, limit=settings.dispatch_batch_max_legs)


async def test_critical_leg_that_came_last_is_offered_in_the_first_round_of_a_full_backlog(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    arrived = FUTURE - timedelta(minutes=10)
    async with sessionmaker() as session, session.begin():
        for i in range(3):
            await add_volunteer(session, lat=lat + 0.001 * i, lon=lon)
        routine = [
            await submit_task(session, lat=lat, lon=lon, submitted_at=arrived + timedelta(seconds=i))
            for i in range(4)
        ]
        urgent = await submit_task(
            session, lat=lat, lon=lon, priority="urgent", submitted_at=arrived + timedelta(seconds=10)
        )
        critical = await submit_task(
            session, lat=lat, lon=lon, priority="critical", submitted_at=arrived + timedelta(seconds=11)
        )
    legs = {task.legs[0].leg_id: task.priority for task in [*routine, urgent, critical]}
    await round_with_limit(sessionmaker, stack, legs, limit=2)
    offered = await offered_legs(sessionmaker, legs)
    assert sorted(legs[leg_id] for leg_id in offered) == ["critical", "urgent"]


async def test_vulnerable_recipient_goes_first_among_legs_of_equal_priority(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    arrived = FUTURE - timedelta(minutes=10)
    async with sessionmaker() as session, session.begin():
        for i in range(2):
            await add_volunteer(session, lat=lat + 0.001 * i, lon=lon)
        earlier = [
            await submit_task(
                session, lat=lat, lon=lon, priority="urgent", submitted_at=arrived + timedelta(seconds=i)
            )
            for i in range(3)
        ]
        vulnerable = await submit_task(
            session,
            lat=lat,
            lon=lon,
            priority="urgent",
            vulnerable=True,
            submitted_at=arrived + timedelta(seconds=10),
        )
    oldest, vulnerable_leg = earlier[0].legs[0].leg_id, vulnerable.legs[0].leg_id
    legs = [task.legs[0].leg_id for task in [*earlier, vulnerable]]
    await round_with_limit(sessionmaker, stack, legs, limit=2)
    # The vulnerable recipient first, then the oldest of the rest.
    assert await offered_legs(sessionmaker, legs) == {vulnerable_leg, oldest}


async def test_taking_in_an_urgent_leg_wakes_the_matchers_and_a_routine_one_does_not(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    heard: asyncio.Queue[str] = asyncio.Queue()
    counted: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(stack.database_url)
    await listener.add_listener(PRESSING_CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    await listener.add_listener(LEGS_CHANNEL, lambda *args: counted.put_nowait(args[-1]))
    try:
        async with sessionmaker() as session, session.begin():
            await submit_task(session, lat=lat, lon=lon, legs=3)
        # Every take-in tells the matchers how many legs it added, towards a full batch.
        assert await asyncio.wait_for(counted.get(), timeout=30) == "3"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(heard.get(), timeout=1.0)
        for priority in ("urgent", "critical"):
            async with sessionmaker() as session, session.begin():
                await submit_task(session, lat=lat, lon=lon, priority=priority)
            await asyncio.wait_for(heard.get(), timeout=30)
            assert await asyncio.wait_for(counted.get(), timeout=30) == "1"
    finally:
        await listener.close()
