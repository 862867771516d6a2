"""A volunteer's app retries an action it sent with an Idempotency-Key: the retry gets the first answer;
and an app that was offline says when the volunteer did what it reports (`occurred_at`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import LegRow, VolunteerRequestRow
from shared.events import DISPATCH_TOPIC, CloudEvent
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


async def test_keys_are_each_volunteers_own_and_answers_are_kept_sealed(
    client: Client, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
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
    async with sessionmaker() as session:
        stored = await session.get(VolunteerRequestRow, (uuid.UUID(volunteer_id), key))
    assert stored is not None and stored.status == 200 and set(stored.response) == {"sealed"}


async def _leg_events(bootstrap: str, leg_id: str, types: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The data of this leg's events of these types on the dispatch topic, by type."""
    consumer = AIOKafkaConsumer(
        DISPATCH_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and set(found) != set(types):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    event = CloudEvent.from_bytes(record.value)
                    if event.type in types and event.data.get("leg_id") == leg_id:
                        found[event.type] = event.data
    finally:
        await consumer.stop()
    return found


async def test_the_time_a_volunteer_did_it_is_kept_and_travels_on_the_event(
    client: Client, stack: Stack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    task = await client.task(operator, place)
    leg = task["legs"][0]
    offer = await client.until_offered(token, leg["id"])
    assert (await client.call("POST", f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept", token))[
        0
    ] == 200
    me = f"{client.dispatcher}/v1/me/legs/{leg['id']}"
    now = datetime.now(UTC)

    for when in (now + timedelta(hours=1), now - timedelta(days=2)):
        status, problem = await client.call(
            "POST", f"{me}/picked-up", token, json={"occurred_at": when.isoformat()}
        )
        assert status == 422 and problem["errors"][0]["field"] == "$.occurred_at", problem
        status, problem = await client.call(
            "POST",
            f"{me}/delivered",
            token,
            json={"confirmation_code": leg["confirmation_code"], "occurred_at": when.isoformat()},
        )
        assert status == 422 and problem["errors"][0]["field"] == "$.occurred_at", problem

    picked_up_at = (now - timedelta(hours=2)).replace(microsecond=0)
    delivered_at = (now - timedelta(hours=1)).replace(microsecond=0)
    status, _ = await client.call(
        "POST", f"{me}/picked-up", token, json={"occurred_at": picked_up_at.isoformat()}
    )
    assert status == 200
    status, _ = await client.call(
        "POST",
        f"{me}/delivered",
        token,
        json={"confirmation_code": leg["confirmation_code"], "occurred_at": delivered_at.isoformat()},
    )
    assert status == 202

    async with sessionmaker() as session:
        row = await session.get(LegRow, uuid.UUID(leg["id"]))
        assert row is not None
        assert (row.picked_up_at, row.delivered_at) == (picked_up_at, delivered_at)
        assert row.updated_at > delivered_at, "the time it was recorded is kept too"
    data = await _leg_events(stack.kafka_bootstrap, leg["id"], ("leg.picked_up", "leg.delivered"))
    assert datetime.fromisoformat(data["leg.picked_up"]["occurred_at"]) == picked_up_at
    assert datetime.fromisoformat(data["leg.delivered"]["occurred_at"]) == delivered_at


async def test_a_retried_problem_report_hands_the_leg_back_once_and_says_when(
    client: Client, stack: Stack
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    task = await client.task(operator, place)
    leg = task["legs"][0]
    offer = await client.until_offered(token, leg["id"])
    assert (await client.call("POST", f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept", token))[
        0
    ] == 200
    problem = f"{client.dispatcher}/v1/me/legs/{leg['id']}/problem"
    when = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    body = {"reason": "flat tyre", "occurred_at": when.isoformat()}
    key = str(uuid.uuid4())
    first = await client.call("POST", problem, token, json=body, **keyed(key))
    assert first[0] == 200 and first[1]["status"] == "pending"
    assert await client.call("POST", problem, token, json=body, **keyed(key)) == first
    assert (await client.call("POST", problem, token, json=body))[0] == 404, "the leg is no longer theirs"
    data = await _leg_events(stack.kafka_bootstrap, leg["id"], ("leg.problem_reported",))
    assert datetime.fromisoformat(data["leg.problem_reported"]["occurred_at"]) == when
