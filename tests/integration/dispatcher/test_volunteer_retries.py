"""A volunteer's app retries an action it sent with an Idempotency-Key: the retry gets the first answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, somewhere

pytestmark = pytest.mark.e2e


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


def keyed(key: str) -> dict[str, dict[str, str]]:
    return {"headers": {"Idempotency-Key": key}}


async def test_retried_actions_get_their_first_answer_and_a_key_is_for_one_request(client: Client) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    task = await client.task(operator, place)
    leg = task["legs"][0]
    offer = await client.until_offered(token, leg["id"])
    accept = f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept"
    me = f"{client.dispatcher}/v1/me/legs/{leg['id']}"

    accept_key = str(uuid.uuid4())
    first = await client.call("POST", accept, token, **keyed(accept_key))
    assert first[0] == 200 and first[1]["status"] == "assigned"
    assert await client.call("POST", accept, token, **keyed(accept_key)) == first
    assert (await client.call("POST", accept, token))[0] == 409, "without the key a second accept conflicts"
    status, problem = await client.call("POST", f"{me}/picked-up", token, **keyed(accept_key))
    assert status == 422 and problem["errors"][0]["field"] == "header:Idempotency-Key"

    picked_key = str(uuid.uuid4())
    picked = await client.call("POST", f"{me}/picked-up", token, **keyed(picked_key))
    assert picked[0] == 200 and picked[1]["status"] == "picked_up"
    assert await client.call("POST", f"{me}/picked-up", token, **keyed(picked_key)) == picked

    delivered_key = str(uuid.uuid4())
    body = {"confirmation_code": leg["confirmation_code"], "note": "left with the neighbour"}
    delivered = await client.call("POST", f"{me}/delivered", token, json=body, **keyed(delivered_key))
    assert delivered[0] == 202 and delivered[1]["status"] == "delivered"
    async with client.http.post(
        f"{me}/delivered",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": delivered_key},
    ) as response:
        assert response.status == 202 and await response.json() == delivered[1]
        assert response.headers.get("Idempotent-Replayed") == "true"
    status, problem = await client.call(
        "POST", f"{me}/delivered", token, json={**body, "note": "another"}, **keyed(delivered_key)
    )
    assert status == 422 and problem["title"] == "Idempotency key reused"


async def test_keys_are_each_volunteers_own(client: Client) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    _, other = await client.volunteer(operator, (place[0] + 10, place[1]))
    task = await client.task(operator, place)
    offer = await client.until_offered(token, task["legs"][0]["id"])
    key = str(uuid.uuid4())
    status, _ = await client.call(
        "POST", f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept", token, **keyed(key)
    )
    assert status == 200
    status, _ = await client.call(
        "POST", f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept", other, **keyed(key)
    )
    assert status == 404, "another volunteer's key is not a replay of this one's"
