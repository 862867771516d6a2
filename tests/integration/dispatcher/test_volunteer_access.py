"""Taking a volunteer's access away (rotate, revoke, deactivate), and legs that take no more codes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import LegRow, VolunteerRow
from tests.client import bearer
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, somewhere

pytestmark = pytest.mark.e2e


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def refused(client: Client, token: str) -> bool:
    """Whether the dispatcher refuses the token; a revocation reaches its cache by NOTIFY, within 5 s."""
    for _ in range(50):
        if (await client.poll(token))[0] == 401:
            return True
        await asyncio.sleep(0.1)
    return False


async def assigned_leg(client: Client, operator: str) -> tuple[str, str, dict[str, str]]:
    """A volunteer on duty, and a leg of a fresh task they have accepted: (volunteer id, token, leg)."""
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    task = await client.task(operator, place)
    leg = task["legs"][0]
    offer = await client.until_offered(token, leg["id"])
    status, _ = await client.call("POST", f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept", token)
    assert status == 200
    return volunteer_id, token, {**leg, "task_id": task["id"]}


async def test_rotating_or_revoking_a_volunteers_token_refuses_the_old_one(client: Client) -> None:
    operator = await client.organisation()
    status, created = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers", operator, json={"name": "Lost Phone"}
    )
    assert status == 201 and created["token_id"]
    volunteers = f"{client.dispatcher}/v1/volunteers/{created['id']}"
    first = created["token"]
    assert (await client.poll(first))[0] == 200

    status, rotated = await client.call("POST", f"{volunteers}/tokens", operator)
    assert status == 201 and rotated["token"] != first
    assert await refused(client, first), "the token from before the rotation still works"
    assert (await client.poll(rotated["token"]))[0] == 200
    # The first token is gone already; the new one goes by its id.
    assert (await client.call("DELETE", f"{volunteers}/tokens/{created['token_id']}", operator))[0] == 404
    assert (await client.call("DELETE", f"{volunteers}/tokens/{rotated['id']}", operator))[0] == 204
    assert await refused(client, rotated["token"]), "a revoked token still works"
    assert (await client.call("DELETE", f"{volunteers}/tokens/{rotated['id']}", operator))[0] == 404


async def test_another_organisations_operator_cannot_touch_a_volunteers_access(client: Client) -> None:
    operator, other = await client.organisation(), await client.organisation()
    status, created = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers", operator, json={"name": "Kept Safe"}
    )
    assert status == 201
    for volunteer_id in (created["id"], str(uuid.uuid4())):
        base = f"{client.dispatcher}/v1/volunteers/{volunteer_id}"
        assert (await client.call("POST", f"{base}/tokens", other))[0] == 404
        assert (await client.call("DELETE", f"{base}/tokens/{created['token_id']}", other))[0] == 404
        assert (await client.call("POST", f"{base}/deactivate", other))[0] == 404
    # Nothing happened to it: its token works, and it is still active.
    assert (await client.poll(created["token"]))[0] == 200
    status, view = await client.call("GET", f"{client.dispatcher}/v1/volunteers/{created['id']}", operator)
    assert status == 200 and view["deactivated_at"] is None


async def test_a_deactivated_volunteer_is_shut_out_off_duty_and_hands_back_unpicked_legs(
    client: Client, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    operator = await client.organisation()
    volunteer_id, token, leg = await assigned_leg(client, operator)
    base = f"{client.dispatcher}/v1/volunteers/{volunteer_id}"

    status, view = await client.call("POST", f"{base}/deactivate", operator)
    assert status == 200 and view["deactivated_at"] is not None
    assert (view["on_duty"], view["active_legs"]) == (False, 0)
    assert await refused(client, token), "a deactivated volunteer's token still works"
    assert (await client.call("POST", f"{base}/deactivate", operator))[1] == view, (
        "deactivating is idempotent"
    )
    status, problem = await client.call("POST", f"{base}/tokens", operator)
    assert status == 409 and problem["status"] == 409, "a deactivated volunteer gets no new token"
    async with sessionmaker() as session:
        row = await session.get(LegRow, uuid.UUID(leg["id"]))
        volunteer = await session.get(VolunteerRow, uuid.UUID(volunteer_id))
    assert row is not None and row.volunteer_id is None and row.status in ("pending", "offered")
    assert volunteer is not None and not volunteer.on_duty
    status, _ = await client.call(
        "POST",
        f"{client.dispatcher}/v1/legs/{leg['id']}/assign",
        operator,
        json={"volunteer_id": volunteer_id},
    )
    assert status == 409, "a deactivated volunteer cannot be given a leg by hand either"


async def test_a_leg_flagged_for_wrong_codes_refuses_even_the_right_code(client: Client) -> None:
    operator = await client.organisation()
    _, token, leg = await assigned_leg(client, operator)
    me = f"{client.dispatcher}/v1/me/legs/{leg['id']}"
    assert (await client.call("POST", f"{me}/picked-up", token))[0] == 200
    code = leg["confirmation_code"]
    for shift in (1, 2, 3):  # confirmation_max_failures defaults to 3
        wrong = str((int(code) + shift) % 10 ** len(code)).zfill(len(code))
        assert (await client.call("POST", f"{me}/delivered", token, json={"confirmation_code": wrong}))[
            0
        ] == 202

    async def flagged() -> bool:
        legs = (await client.poll(token))[1]["legs"]
        return any(item["id"] == leg["id"] and item["flagged"] for item in legs)

    for _ in range(300):  # the flag travels notifier -> Kafka -> dispatcher
        if await flagged():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the dispatcher never learned the leg was flagged")
    async with client.http.post(
        f"{me}/delivered", json={"confirmation_code": code}, headers=bearer(token)
    ) as response:
        assert response.status == 409
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem["status"] == 409 and "wrong confirmation codes" in problem["detail"]
    status, task = await client.call("GET", f"{client.intake}/v1/tasks/{leg['task_id']}", operator)
    assert status == 200 and task["legs"][0]["status"] != "confirmed" and task["status"] != "completed"
