"""Welfare limits through `set_duty` and the matcher, against PostgreSQL: the shift clock survives a
short break, a rest resets it, daily caps refuse duty, and the day ends at local midnight."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import VolunteerRow
from services.dispatcher.domain import welfare
from services.dispatcher.domain.errors import DailyCapReached, RestOwed
from services.dispatcher.service_layer.roster import Roster
from services.dispatcher.service_layer.volunteers import set_duty, welfare_limits
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, somewhere
from tests.integration.dispatcher.conftest import FUTURE, add_volunteer, matching_round, submit_task


@pytest.fixture
def limits(stack: Stack) -> welfare.Limits:
    return welfare_limits(stack.settings())


async def duty(
    sessionmaker: async_sessionmaker[AsyncSession],
    volunteer_id: uuid.UUID,
    on_duty: bool,
    now: datetime,
    limits: welfare.Limits,
) -> VolunteerRow:
    async with sessionmaker() as session, session.begin():
        return await set_duty(
            session=session, volunteer_id=volunteer_id, on_duty=on_duty, limits=limits, now=now
        )


async def located(
    sessionmaker: async_sessionmaker[AsyncSession], volunteer_id: uuid.UUID, at: datetime
) -> None:
    async with sessionmaker() as session, session.begin():
        statement = update(VolunteerRow).where(VolunteerRow.id == volunteer_id).values(location_at=at)
        await session.execute(statement)


async def off_duty_volunteer(
    sessionmaker: async_sessionmaker[AsyncSession], place: tuple[float, float], **fields: Any
) -> uuid.UUID:
    async with sessionmaker() as session, session.begin():
        row = await add_volunteer(
            session, lat=place[0], lon=place[1], on_duty=False, duty_started_at=None, **fields
        )
        return row.id


async def test_a_five_minute_break_at_3h59_keeps_the_clock_and_a_full_rest_resets_it(
    sessionmaker: async_sessionmaker[AsyncSession],
    stack: Stack,
    place: tuple[float, float],
    limits: welfare.Limits,
) -> None:
    assert limits.shift_max_on_duty == timedelta(hours=4) and limits.rest == timedelta(minutes=30)
    volunteer_id = await off_duty_volunteer(sessionmaker, place)
    await duty(sessionmaker, volunteer_id, True, FUTURE, limits)
    await duty(sessionmaker, volunteer_id, False, FUTURE + timedelta(hours=3, minutes=59), limits)
    row = await duty(sessionmaker, volunteer_id, True, FUTURE + timedelta(hours=4, minutes=4), limits)
    assert row.on_duty and row.shift_duty_s == timedelta(hours=3, minutes=59).total_seconds()

    async with sessionmaker() as session, session.begin():
        await submit_task(session, lat=place[0], lon=place[1])
    await located(sessionmaker, volunteer_id, FUTURE + timedelta(hours=4, minutes=5))
    roster = Roster()
    offered = await matching_round(sessionmaker, stack, roster, at=timedelta(hours=4, minutes=5))
    assert volunteer_id not in offered, "4 h on duty counting the hours before the break: rest owed"

    # The cap was reached at 4 h 05; rest runs from then, and going on duty before it ends is refused.
    await duty(sessionmaker, volunteer_id, False, FUTURE + timedelta(hours=4, minutes=6), limits)
    with pytest.raises(RestOwed) as refused:
        await duty(sessionmaker, volunteer_id, True, FUTURE + timedelta(hours=4, minutes=20), limits)
    rest_ends = FUTURE + timedelta(hours=4, minutes=35)
    assert rest_ends.isoformat() in refused.value.message

    row = await duty(sessionmaker, volunteer_id, True, rest_ends, limits)
    assert row.on_duty and row.shift_duty_s == 0 and row.rest_until is None
    await located(sessionmaker, volunteer_id, rest_ends)
    offered = await matching_round(sessionmaker, stack, roster, at=timedelta(hours=4, minutes=36))
    assert volunteer_id in offered, "rested: the clock starts again"


async def test_a_rest_off_duty_before_the_cap_resets_the_clock(
    sessionmaker: async_sessionmaker[AsyncSession], place: tuple[float, float], limits: welfare.Limits
) -> None:
    morning = datetime(2026, 12, 10, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai: the day has hours to go
    volunteer_id = await off_duty_volunteer(sessionmaker, place)
    await duty(sessionmaker, volunteer_id, True, morning, limits)
    row = await duty(sessionmaker, volunteer_id, False, morning + timedelta(hours=3), limits)
    assert row.shift_duty_s == timedelta(hours=3).total_seconds()
    await duty(sessionmaker, volunteer_id, True, morning + timedelta(hours=3, minutes=30), limits)
    row = await duty(sessionmaker, volunteer_id, False, morning + timedelta(hours=3, minutes=31), limits)
    assert row.shift_duty_s == 60.0, "the shift clock started again"
    assert row.duty_today_s == timedelta(hours=3, minutes=1).total_seconds(), "the day's duty did not"


async def test_the_daily_duty_cap_refuses_duty_until_local_midnight(
    sessionmaker: async_sessionmaker[AsyncSession], place: tuple[float, float], limits: welfare.Limits
) -> None:
    evening = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
    volunteer_id = await off_duty_volunteer(
        sessionmaker,
        place,
        duty_day=welfare.local_day(evening, limits),
        duty_today_s=limits.daily_max_on_duty.total_seconds(),
    )
    with pytest.raises(DailyCapReached) as refused:
        await duty(sessionmaker, volunteer_id, True, evening, limits)
    assert "10 h on duty" in refused.value.message
    assert "2026-12-10T16:00:00+00:00" in refused.value.message
    row = await duty(sessionmaker, volunteer_id, True, datetime(2026, 12, 10, 16, 0, tzinfo=UTC), limits)
    assert row.on_duty and row.duty_today_s == 0


async def test_local_midnight_in_shanghai_resets_legs_done_today(
    sessionmaker: async_sessionmaker[AsyncSession], place: tuple[float, float], limits: welfare.Limits
) -> None:
    assert limits.daily_max_legs == 30
    before = datetime(2026, 12, 10, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    midnight = datetime(2026, 12, 10, 16, 0, tzinfo=UTC)
    volunteer_id = await off_duty_volunteer(
        sessionmaker, place, legs_done_today=30, legs_day=welfare.local_day(before, limits)
    )
    with pytest.raises(DailyCapReached) as refused:
        await duty(sessionmaker, volunteer_id, True, before, limits)
    assert "30 legs" in refused.value.message
    await duty(sessionmaker, volunteer_id, True, midnight, limits)

    async with sessionmaker() as session, session.begin():
        await repository.change_load(session, volunteer_id, active=1)
        await repository.change_load(
            session, volunteer_id, active=-1, done=1, today=welfare.local_day(midnight, limits)
        )
    async with sessionmaker() as session:
        row = await session.get(VolunteerRow, volunteer_id)
        assert row is not None
        assert (row.legs_done_today, row.legs_day) == (1, welfare.local_day(midnight, limits))


async def test_utc_midnight_does_not_reset_legs_done_today(
    sessionmaker: async_sessionmaker[AsyncSession], place: tuple[float, float], limits: welfare.Limits
) -> None:
    late = datetime(2026, 12, 10, 23, 59, tzinfo=UTC)  # 07:59 on the 11th in Shanghai
    volunteer_id = await off_duty_volunteer(
        sessionmaker, place, legs_done_today=30, legs_day=welfare.local_day(late, limits)
    )
    with pytest.raises(DailyCapReached):
        await duty(sessionmaker, volunteer_id, True, late + timedelta(minutes=2), limits)


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


@pytest.mark.e2e
async def test_going_on_duty_past_a_limit_is_a_409_naming_it_and_when_duty_may_resume(
    client: Client, sessionmaker: async_sessionmaker[AsyncSession], limits: welfare.Limits
) -> None:
    operator = await client.organisation()
    volunteer_id, token = await client.volunteer(operator, somewhere())
    duty_url, volunteer_url = (
        f"{client.dispatcher}/v1/me/duty",
        f"{client.dispatcher}/v1/volunteers/{volunteer_id}",
    )
    status, view = await client.call("PUT", duty_url, token, json={"on_duty": False})
    assert status == 200 and view["limit_reached"] is None and view["rest_owed_until"] is None
    assert 0 < view["shift_on_duty_s"] < 60 and view["legs_done_today"] == 0

    rest_ends = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(VolunteerRow)
            .where(VolunteerRow.id == uuid.UUID(volunteer_id))
            .values(rest_until=rest_ends)
        )
    status, problem = await client.call("PUT", duty_url, token, json={"on_duty": True})
    assert status == 409 and problem["title"] == "Rest owed", problem
    assert rest_ends.isoformat() in problem["detail"]
    status, view = await client.call("GET", volunteer_url, operator)
    assert (view["on_duty"], view["limit_reached"]) == (False, "rest_owed")
    assert (
        datetime.fromisoformat(view["rest_owed_until"])
        == rest_ends
        == datetime.fromisoformat(view["may_work_from"])
    )

    today = welfare.local_day(datetime.now(UTC), limits)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(VolunteerRow)
            .where(VolunteerRow.id == uuid.UUID(volunteer_id))
            .values(rest_until=None, legs_done_today=limits.daily_max_legs, legs_day=today)
        )
    status, problem = await client.call("PUT", duty_url, token, json={"on_duty": True})
    assert status == 409 and problem["title"] == "Daily cap reached", problem
    assert f"{limits.daily_max_legs} legs" in problem["detail"]
    midnight = welfare.next_midnight(datetime.now(UTC), limits.time_zone)
    assert midnight.isoformat() in problem["detail"]
    status, view = await client.call("GET", volunteer_url, operator)
    assert (view["limit_reached"], view["legs_done_today"]) == ("daily_legs_cap", limits.daily_max_legs)
