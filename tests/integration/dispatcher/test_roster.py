"""The matcher's in-memory roster: read once, then only what changed, and never miss a late commit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import OfferRow, VolunteerRow
from services.dispatcher.domain.eligibility import Volunteer
from services.dispatcher.domain.matching import unit_sphere
from services.dispatcher.service_layer.matcher import policy_from
from services.dispatcher.service_layer.offers import offer_batch, prepare_pool
from services.dispatcher.service_layer.roster import Box, Roster
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import (
    FUTURE,
    OFFER_TTL,
    ORGANISATION,
    add_volunteer,
    matching_round,
    submit_task,
)

Maker = async_sessionmaker[AsyncSession]


def around(place: tuple[float, float]) -> Box:
    """Half a degree around `place` (other tests' volunteers are on the roster too)."""
    lat, lon = place
    return Box(lat - 0.5, lat + 0.5, lon - 0.5, lon + 0.5)


async def views_near(sessionmaker: Maker, roster: Roster, place: tuple[float, float]) -> list[Volunteer]:
    async with sessionmaker() as session, session.begin():
        await roster.refresh(session)
        return await roster.volunteers_within(session, around(place), organisations=[ORGANISATION])


async def ids_near(sessionmaker: Maker, roster: Roster, place: tuple[float, float]) -> set[uuid.UUID]:
    return {v.id for v in await views_near(sessionmaker, roster, place)}


async def until_not_reread(sessionmaker: Maker, roster: Roster, unchanged: set[uuid.UUID]) -> None:
    """Refresh until none of `unchanged` is read again.

    A row is read again while any transaction older than its writer still runs (other processes'
    work on this database counts), so this settles once those have ended: within seconds.
    """
    for _ in range(100):
        async with sessionmaker() as session, session.begin():
            if not unchanged & set(await roster.refresh(session)):
                return
        await asyncio.sleep(0.1)
    raise AssertionError("unchanged rows were still read on every refresh")


async def test_the_first_read_takes_everyone_on_duty_and_later_reads_only_the_changes(
    sessionmaker: Maker, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        on = await add_volunteer(session, lat=lat, lon=lon)
        off = await add_volunteer(session, lat=lat, lon=lon, on_duty=False)
        uninsured = await add_volunteer(session, lat=lat, lon=lon, insured=False)
    roster = Roster()
    assert await ids_near(sessionmaker, roster, place) == {on.id}
    assert uninsured.id not in await ids_near(sessionmaker, roster, place)

    await until_not_reread(sessionmaker, roster, {on.id, off.id, uninsured.id})
    async with sessionmaker() as session, session.begin():
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == off.id).values(on_duty=True))
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == on.id).values(on_duty=False))
    assert await ids_near(sessionmaker, roster, place) == {off.id}

    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(VolunteerRow).where(VolunteerRow.id == off.id).values(lat=lat + 2, lon=lon + 2)
        )
    assert await ids_near(sessionmaker, roster, place) == set(), "moved away"
    assert await ids_near(sessionmaker, roster, (lat + 2, lon + 2)) == {off.id}


async def test_a_read_in_several_batches_takes_every_row_and_one_bound_for_the_next(
    sessionmaker: Maker, place: tuple[float, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read comes in batches from one cursor: every row of it counts, and the next read starts
    from the bound of that one statement."""
    monkeypatch.setattr(repository, "MATCHABLE_BATCH", 2)
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        five = [await add_volunteer(session, lat=lat, lon=lon) for _ in range(5)]
    roster = Roster()
    assert await ids_near(sessionmaker, roster, place) == {v.id for v in five}
    await until_not_reread(sessionmaker, roster, {v.id for v in five})
    async with sessionmaker() as session, session.begin():
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == five[0].id).values(on_duty=False))
    assert await ids_near(sessionmaker, roster, place) == {v.id for v in five[1:]}


async def test_a_transaction_that_commits_after_a_read_is_read_next_time(
    sessionmaker: Maker, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=lat, lon=lon, on_duty=False)
    roster = Roster()
    assert await ids_near(sessionmaker, roster, place) == set()

    # The change is written (its transaction id taken) before the next read and committed after it.
    async with sessionmaker() as slow, slow.begin():
        await slow.execute(update(VolunteerRow).where(VolunteerRow.id == v.id).values(on_duty=True))
        assert await ids_near(sessionmaker, roster, place) == set(), "not committed yet"
    assert await ids_near(sessionmaker, roster, place) == {v.id}


async def volunteer_beside_a_task(sessionmaker: Maker, place: tuple[float, float]) -> VolunteerRow:
    """A volunteer on duty at `place` and a pending leg picked up there."""
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=lat, lon=lon)
        await submit_task(session, lat=lat, lon=lon)
    return v


async def test_open_offers_are_counted_at_each_read(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    v = await volunteer_beside_a_task(sessionmaker, place)
    roster = Roster()
    assert [view.live_offers for view in await views_near(sessionmaker, roster, place)] == [0]
    await matching_round(sessionmaker, stack, roster)
    views = await views_near(sessionmaker, roster, place)
    assert [(view.id, view.live_offers) for view in views] == [(v.id, 1)]

    async with sessionmaker() as session, session.begin():
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == v.id).values(lat=place[0] + 0.01))
    views = await views_near(sessionmaker, roster, place)
    assert [view.live_offers for view in views] == [1], "a changed row keeps the offers it holds"

    async with sessionmaker() as session, session.begin():
        await session.execute(update(OfferRow).where(OfferRow.volunteer_id == v.id).values(status="declined"))
    views = await views_near(sessionmaker, roster, place)
    assert [view.live_offers for view in views] == [0], "an offer no longer open no longer counts"


async def test_a_matching_round_reads_into_the_roster_it_is_given(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    v = await volunteer_beside_a_task(sessionmaker, place)
    roster = Roster()
    assert v.id in await matching_round(sessionmaker, stack, roster), "our leg offered to our volunteer"
    async with sessionmaker() as session:
        # No refresh here: the round must have read into this very roster.
        assert v.id in {
            view.id
            for view in await roster.volunteers_within(session, around(place), organisations=[ORGANISATION])
        }


async def test_a_volunteer_who_left_after_the_pool_was_built_gets_no_offer(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    v = await volunteer_beside_a_task(sessionmaker, place)
    roster, now, policy = Roster(), FUTURE, policy_from(stack.settings())
    async with sessionmaker() as session, session.begin():
        pool = await prepare_pool(session, roster, now=now, policy=policy)
    assert pool is not None
    assert v.id in {view.id for view in pool.volunteers}
    async with sessionmaker() as session, session.begin():
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == v.id).values(on_duty=False))
    async with sessionmaker() as session, session.begin():
        changes = await offer_batch(session, now=now, policy=policy, offer_ttl=OFFER_TTL, pool=pool)
    assert v.id not in changes.volunteers, "off duty since: checked again under the lock"


async def test_a_pool_asks_the_rules_again_of_a_changed_volunteer_and_of_one_whose_time_is_up(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    """The roster remembers until when each view was available (`Roster.pool`); a view replaced
    (its row or its open offers changed) or past that time is asked the rules again."""
    lat, lon = place
    policy = policy_from(stack.settings())
    async with sessionmaker() as session, session.begin():
        leaving = await add_volunteer(session, lat=lat, lon=lon)
        offered = await add_volunteer(session, lat=lat, lon=lon, max_active_legs=1)
        staying = await add_volunteer(session, lat=lat, lon=lon, location_at=FUTURE)
    roster = Roster()

    async def pooled(at: timedelta = timedelta(0)) -> set[uuid.UUID]:
        async with sessionmaker() as session, session.begin():
            await roster.refresh(session)
            pool = await roster.pool(
                session, around(place), organisations=[ORGANISATION], now=FUTURE + at, policy=policy
            )
        return {v.id for v in pool.volunteers} & {leaving.id, offered.id, staying.id}

    assert await pooled() == {leaving.id, offered.id, staying.id}
    assert await pooled() == {leaving.id, offered.id, staying.id}, "remembered: the same answer"
    async with sessionmaker() as session, session.begin():
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == leaving.id).values(on_duty=False))
        await submit_task(session, lat=lat, lon=lon)
    assert await matching_round(sessionmaker, stack, roster) & {offered.id, staying.id}
    async with sessionmaker() as session, session.begin():  # whichever of the two it went to
        await session.execute(
            update(OfferRow)
            .where(OfferRow.volunteer_id.in_([offered.id, staying.id]))
            .values(volunteer_id=offered.id)
        )
    assert await pooled() == {staying.id}, "off duty, and an open offer filling the only slot"
    # `offered`'s location was a minute older than `staying`'s: stale first, with nothing changed.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(OfferRow).where(OfferRow.volunteer_id == offered.id).values(status="declined")
        )
    assert await pooled(policy.location_max_age - timedelta(seconds=30)) == {staying.id}
    assert await pooled(policy.location_max_age + timedelta(seconds=30)) == set()


async def test_a_pool_indexes_each_volunteer_where_their_row_last_put_them(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    """The roster keeps everyone's point for the pool's index as their position changes; a slot
    freed by one volunteer and taken by the next holds the newcomer's point."""
    lat, lon = place
    policy = policy_from(stack.settings())
    async with sessionmaker() as session, session.begin():
        moving = await add_volunteer(session, lat=lat, lon=lon)
        leaving = await add_volunteer(session, lat=lat + 0.01, lon=lon)
    roster = Roster()

    async def points() -> dict[uuid.UUID, tuple[float, ...]]:
        async with sessionmaker() as session, session.begin():
            await roster.refresh(session)
            pool = await roster.pool(
                session, around(place), organisations=[ORGANISATION], now=FUTURE, policy=policy
            )
        team = pool.teams[ORGANISATION]
        return {
            pool.volunteers[member].id: tuple(team.index.data[row]) for row, member in enumerate(team.members)
        }

    def point(at_lat: float, at_lon: float) -> Any:
        return pytest.approx(tuple(unit_sphere(np.array([at_lat]), np.array([at_lon]))[0]), rel=0, abs=1e-12)

    first = await points()
    assert first[moving.id] == point(lat, lon) and first[leaving.id] == point(lat + 0.01, lon)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(VolunteerRow).where(VolunteerRow.id == moving.id).values(lat=lat - 0.02, lon=lon + 0.03)
        )
        await session.execute(update(VolunteerRow).where(VolunteerRow.id == leaving.id).values(on_duty=False))
    moved = await points()
    assert moved[moving.id] == point(lat - 0.02, lon + 0.03) and leaving.id not in moved
    async with sessionmaker() as session, session.begin():
        arriving = await add_volunteer(session, lat=lat + 0.04, lon=lon - 0.01)
    assert (await points())[arriving.id] == point(lat + 0.04, lon - 0.01)
