"""Hand assignment, moves and releases over HTTP on the running system: problems, wake-ups, intake's view."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import VolunteerRow
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, leg_arrives, somewhere

pytestmark = pytest.mark.e2e

Maker = async_sessionmaker[AsyncSession]
PROBLEMS = "https://errands.example/problems/"


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def change(sessionmaker: Maker, volunteer_id: str, **values: Any) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(VolunteerRow).where(VolunteerRow.id == uuid.UUID(volunteer_id)).values(**values)
        )


async def holder_in_intake(
    client: Client, operator: str, task_id: str, leg_id: str, expected: str | None
) -> None:
    """Wait until intake's view of the task shows `expected` holding the leg."""
    for _ in range(300):
        status, task = await client.call("GET", f"{client.intake}/v1/tasks/{task_id}", operator)
        assert status == 200
        leg = next(leg for leg in task["legs"] if leg["id"] == leg_id)
        holder = (leg.get("volunteer") or {}).get("id")
        if holder == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"intake never showed {expected} holding leg {leg_id}")


async def test_refusals_are_named_problems_and_an_override_is_accepted(
    client: Client, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    place = somewhere()
    status, off = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers", operator, json={"name": "Off Duty", "insured": True}
    )
    assert status == 201
    uninsured, _ = await client.volunteer(operator, place, insured=False)
    resting, _ = await client.volunteer(operator, place)
    capped, _ = await client.volunteer(operator, place)
    await change(sessionmaker, resting, rest_until=datetime.now(UTC) + timedelta(hours=1))
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the configured local time zone
    await change(sessionmaker, capped, legs_done_today=10**6, legs_day=today)
    task = await client.task(operator, (place[0] + 40, place[1]))  # nobody near: only by hand
    leg_id = task["legs"][0]["id"]
    await leg_arrives(sessionmaker, leg_id)
    assign = f"{client.dispatcher}/v1/legs/{leg_id}/assign"

    for volunteer_id, kind in (
        (off["id"], "volunteer-off-duty"),
        (uninsured, "insurance-lapsed"),
        (resting, "rest-owed"),
        (capped, "daily-cap-reached"),
    ):
        status, problem = await client.call("POST", assign, operator, json={"volunteer_id": volunteer_id})
        assert status == 409, problem
        assert problem["type"] == PROBLEMS + kind and "override" in problem["detail"], problem

    status, problem = await client.call(
        "POST", assign, operator, json={"volunteer_id": off["id"], "override": {"reason": "  "}}
    )
    assert status == 422 and problem["errors"][0]["field"] == "$.override.reason", problem
    status, problem = await client.call(
        "POST", assign, operator, json={"volunteer_id": off["id"], "override": {"reason": "x" * 501}}
    )
    assert status == 422 and problem["errors"][0]["field"] == "$.override.reason", problem
    status, assigned = await client.call(
        "POST", assign, operator, json={"volunteer_id": off["id"], "override": {"reason": "knows the family"}}
    )
    assert status == 200 and (assigned["status"], assigned["volunteer_id"]) == ("assigned", off["id"])
    await holder_in_intake(client, operator, task["id"], leg_id, off["id"])


async def test_a_moved_leg_leaves_the_old_app_and_intake_shows_the_new_holder(
    client: Client, sessionmaker: Maker
) -> None:
    operator, other = await client.organisation(), await client.organisation()
    place = somewhere()
    first, first_token = await client.volunteer(operator, place)
    second, second_token = await client.volunteer(operator, place)
    stranger, _ = await client.volunteer(other, place)
    task = await client.task(operator, (place[0] + 40, place[1]), dropoffs=2)
    moved, picked = (leg["id"] for leg in task["legs"])
    for leg_id in (moved, picked):
        await leg_arrives(sessionmaker, leg_id)
        status, _ = await client.call(
            "POST", f"{client.dispatcher}/v1/legs/{leg_id}/assign", operator, json={"volunteer_id": first}
        )
        assert status == 200
    assert (await client.call("POST", f"{client.dispatcher}/v1/me/legs/{picked}/picked-up", first_token))[
        0
    ] == 200

    move = f"{client.dispatcher}/v1/legs/{moved}/move"
    assert (await client.call("POST", move, other, json={"volunteer_id": second}))[0] == 404
    assert (await client.call("POST", move, operator, json={"volunteer_id": stranger}))[0] == 404
    status, problem = await client.call(
        "POST", f"{client.dispatcher}/v1/legs/{picked}/move", operator, json={"volunteer_id": second}
    )
    assert status == 409 and "picked_up" in problem["detail"], problem

    _, _, etag = await client.poll(first_token)
    poll = asyncio.create_task(client.poll(first_token, etag=etag, wait=20))
    await asyncio.sleep(0.3)
    assert not poll.done()
    status, body = await client.call("POST", move, operator, json={"volunteer_id": second})
    assert status == 200 and (body["status"], body["volunteer_id"]) == ("assigned", second), body
    status, view, _ = await poll
    assert status == 200 and [leg["id"] for leg in view["legs"]] == [picked], "woken, and the leg is gone"
    _, view, _ = await client.poll(second_token)
    assert [leg["id"] for leg in view["legs"]] == [moved]
    status, shown = await client.call("GET", f"{client.dispatcher}/v1/volunteers/{first}", operator)
    assert shown["active_legs"] == 1
    await holder_in_intake(client, operator, task["id"], moved, second)


async def test_releasing_a_volunteers_legs_returns_them_and_lists_the_picked_up(
    client: Client, sessionmaker: Maker
) -> None:
    operator, other = await client.organisation(), await client.organisation()
    place = somewhere()
    ill, ill_token = await client.volunteer(operator, place, max_active_legs=3)
    task = await client.task(operator, (place[0] + 40, place[1]), dropoffs=2)
    released, picked = (leg["id"] for leg in task["legs"])
    for leg_id in (released, picked):
        await leg_arrives(sessionmaker, leg_id)
        status, _ = await client.call(
            "POST", f"{client.dispatcher}/v1/legs/{leg_id}/assign", operator, json={"volunteer_id": ill}
        )
        assert status == 200
    assert (await client.call("POST", f"{client.dispatcher}/v1/me/legs/{picked}/picked-up", ill_token))[
        0
    ] == 200
    release = f"{client.dispatcher}/v1/volunteers/{ill}/legs/release"
    assert (await client.call("POST", release, other, json={}))[0] == 404
    status, problem = await client.call("POST", release, operator, json={"to_volunteer_id": ill})
    assert status == 422 and problem["errors"][0]["field"] == "$.to_volunteer_id", problem

    status, body = await client.call("POST", release, operator, json={"reason": "fell ill"})
    assert status == 200, body
    assert body["legs"] == [
        {"id": released, "task_id": task["id"], "status": "pending", "volunteer_id": None}
    ]
    assert body["needs_decision"] == [{"id": picked, "task_id": task["id"], "status": "picked_up"}]
    _, view, _ = await client.poll(ill_token)
    assert [leg["id"] for leg in view["legs"]] == [picked]
    await holder_in_intake(client, operator, task["id"], released, None)
