"""A person's manual assignment in the dispatcher: done with their session cookie, on the audit trail
and on the `leg.assigned` event with them as its actor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from shared.events import DISPATCH_TOPIC, CloudEvent
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, leg_arrives, somewhere

PASSWORD = "a long enough password"


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def _leg_assigned_actor(bootstrap: str, leg_id: str) -> str | None:
    consumer = AIOKafkaConsumer(
        DISPATCH_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                for record in batch:
                    event = CloudEvent.from_bytes(record.value)
                    if event.type == "leg.assigned" and event.data.get("leg_id") == leg_id:
                        return event.actor
    finally:
        await consumer.stop()
    raise AssertionError("leg.assigned never reached the topic")


async def test_a_persons_hand_assignment_is_audited_and_its_event_names_them(
    client: Client, stack: Stack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    status, organisation = await client.call(
        "POST", f"{client.intake}/v1/organisations", client.admin_token, json={"name": f"org {uuid.uuid4()}"}
    )
    assert status == 201
    status, person = await client.call(
        "POST",
        f"{client.intake}/v1/people",
        client.admin_token,
        json={
            "email": f"d-{uuid.uuid4().hex[:8]}@example.org",
            "role": "operator",
            "organisation_id": organisation["id"],
        },
    )
    assert status == 201
    async with client.http.post(
        f"{client.intake}/v1/password-setup", json={"token": person["setup"]["token"], "password": PASSWORD}
    ) as setup:
        assert setup.status == 204
    async with client.http.post(
        f"{client.intake}/v1/sessions", json={"email": person["email"], "password": PASSWORD}
    ) as login:
        session: dict[str, Any] = await login.json()
        cookie = {"Cookie": f"errands_session={login.cookies['errands_session'].value}"}
    browser = {**cookie, "X-CSRF-Token": session["csrf_token"]}

    place = somewhere()
    volunteer_id, _ = await client.volunteer(organisation["operator_token"], place, vehicle="foot")
    task = await client.task(organisation["operator_token"], (place[0] + 40, place[1]))
    leg_id = task["legs"][0]["id"]
    await leg_arrives(sessionmaker, leg_id)

    assign = f"{client.dispatcher}/v1/legs/{leg_id}/assign"
    async with client.http.post(assign, json={"volunteer_id": volunteer_id}, headers=cookie) as no_csrf:
        assert no_csrf.status == 403
    async with client.http.post(assign, json={"volunteer_id": volunteer_id}, headers=browser) as assigned:
        assert assigned.status == 200, await assigned.text()

    status, trail = await client.call(
        "GET", f"{client.intake}/v1/audit", client.admin_token, params={"volunteer_id": volunteer_id}
    )
    assert status == 200
    by_action = {entry["action"]: entry for entry in trail["items"]}
    manual = by_action["leg.assigned_by_hand"]
    assert manual["actor"] == {"kind": "person", "id": person["id"]}
    assert (manual["task_id"], manual["leg_id"], manual["volunteer_id"]) == (task["id"], leg_id, volunteer_id)
    assert by_action["volunteer.registered"]["actor"]["kind"] == "token"  # the organisation's first token
    assert await _leg_assigned_actor(stack.kafka_bootstrap, leg_id) == f"person:{person['id']}"
    # The operator's own session cannot read the trail.
    async with client.http.get(f"{client.intake}/v1/audit", headers=cookie) as refused:
        assert refused.status == 403


async def test_a_volunteers_own_commands_are_on_the_audit_trail_by_their_device(
    client: Client, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    task = await client.task(operator, place)
    leg_id = task["legs"][0]["id"]
    offer = await client.until_offered(token, leg_id)
    me = f"{client.dispatcher}/v1/me"
    assert (await client.call("POST", f"{me}/offers/{offer['id']}/accept", token))[0] == 200
    assert (await client.call("POST", f"{me}/legs/{leg_id}/picked-up", token))[0] == 200
    code = task["legs"][0]["confirmation_code"]
    status, answer = await client.call(
        "POST", f"{me}/legs/{leg_id}/delivered", token, json={"confirmation_code": code}
    )
    assert status == 202, answer
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT action, actor_kind, actor_id, volunteer_id FROM auth.audit"
                    " WHERE leg_id = :leg ORDER BY id"
                ),
                {"leg": uuid.UUID(leg_id)},
            )
        ).all()
    assert [row.action for row in rows] == ["offer.accepted", "leg.picked_up", "leg.delivered"]
    assert {(row.actor_kind, str(row.actor_id), str(row.volunteer_id)) for row in rows} == {
        ("volunteer", volunteer_id, volunteer_id)
    }
