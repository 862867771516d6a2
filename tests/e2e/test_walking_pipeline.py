"""One task travels the whole path through the three services, over HTTP and Kafka only."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from errands import admin
from errands.launcher import ServiceProcesses
from shared.events import CONFIRMATIONS_TOPIC, DISPATCH_TOPIC, TASKS_TOPIC, CloudEvent
from tests.client import bearer, until
from tests.conftest import Stack

pytestmark = pytest.mark.e2e


async def events_of_task(
    bootstrap: str, task_id: str, *, count: int, timeout_s: float = 30.0
) -> list[CloudEvent]:
    """Read the task's CloudEvents with a plain consumer, in the order each topic's partition holds them."""
    consumer = AIOKafkaConsumer(
        TASKS_TOPIC,
        DISPATCH_TOPIC,
        CONFIRMATIONS_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"e2e-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[tuple[CloudEvent, bytes | None]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = CloudEvent.from_bytes(record.value)
                    if event.subject == task_id:
                        found.append((event, record.key))
    finally:
        await consumer.stop()
    assert all(key == task_id.encode() for _, key in found), "every record is keyed by the task id"
    return sorted((event for event, _ in found), key=lambda e: e.time)


async def test_task_travels_from_operator_to_confirmation(stack: Stack, system: ServiceProcesses) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{intake}/v1/organisations",
            json={"name": "Haishu community"},
            headers=bearer(tokens["admin_token"]),
        ) as response:
            assert response.status == 201
            operator = (await response.json())["operator_token"]

        # A volunteer far from everyone else in this suite, near the pickup.
        pickup = {"lat": 29.2901, "lon": 121.4302, "address": "Ninghai donation depot"}
        async with http.post(
            f"{dispatcher}/v1/volunteers",
            json={
                "name": "Chen Jing",
                "phone": "+8613800001234",
                "languages": ["zh", "en"],
                "vehicle": "ebike",
                "capacity_kg": 20,
                "insured": True,
                "max_active_legs": 2,
            },
            headers=bearer(operator),
        ) as response:
            assert response.status == 201, await response.text()
            volunteer_token = (await response.json())["token"]
        me = bearer(volunteer_token)
        async with http.put(f"{dispatcher}/v1/me/duty", json={"on_duty": True}, headers=me) as response:
            assert response.status == 200
        async with http.post(
            f"{dispatcher}/v1/me/location",
            json={"lat": 29.2911, "lon": 121.4312, "accuracy_m": 8},
            headers=me,
        ) as response:
            assert response.status == 202
        async with http.get(f"{dispatcher}/v1/me/assignments", headers=me) as response:
            assert response.status == 200
            assert await response.json() == {"offers": [], "legs": []}
            etag = response.headers["ETag"]

        # The volunteer's app waits; the operator submits; the wait ends with the offer.
        poll = asyncio.create_task(
            http.get(f"{dispatcher}/v1/me/assignments?wait=30", headers={**me, "If-None-Match": etag})
        )
        await asyncio.sleep(0.3)
        assert not poll.done(), "an unchanged long poll waits"
        async with http.post(
            f"{intake}/v1/tasks",
            json={
                "kind": "errand",
                "priority": "urgent",
                "pickup": pickup,
                "dropoffs": [
                    {
                        "lat": 29.2950,
                        "lon": 121.4350,
                        "address": "Building 3, Taoyuan Road",
                        "recipient_name": "Wang Fang",
                        "recipient_phone": "+8613900005678",
                        "language": "en",
                        "vulnerable": True,
                    }
                ],
                "items": [{"name": "insulin", "quantity": 2, "weight_kg": 0.2}],
            },
            headers={**bearer(operator), "Idempotency-Key": str(uuid.uuid4())},
        ) as response:
            assert response.status == 201, await response.text()
            task = await response.json()
        task_id = task["id"]
        code = task["legs"][0]["confirmation_code"]
        assert len(code) == 6 and code.isdigit()

        async with await poll as response:
            assert response.status == 200
            offers = (await response.json())["offers"]
        assert len(offers) == 1
        offer = offers[0]
        assert offer["leg"]["id"] == task["legs"][0]["id"]
        assert "recipient_phone" not in offer["leg"]["dropoff"], "no phone number before the leg is theirs"

        async with http.post(f"{dispatcher}/v1/me/offers/{offer['id']}/accept", headers=me) as response:
            assert response.status == 200, await response.text()
            leg = await response.json()
        assert leg["dropoff"]["recipient_phone"] == "+8613900005678"
        async with http.post(f"{dispatcher}/v1/me/legs/{leg['id']}/picked-up", headers=me) as response:
            assert response.status == 200, await response.text()
        async with http.post(
            f"{dispatcher}/v1/me/legs/{leg['id']}/delivered", json={"confirmation_code": code}, headers=me
        ) as response:
            assert response.status == 202, await response.text()

        async def completed() -> dict[str, Any] | None:
            async with http.get(f"{intake}/v1/tasks/{task_id}", headers=bearer(operator)) as response:
                assert response.status == 200
                body: dict[str, Any] = await response.json()
            return body if body["status"] == "completed" else None

        final = await until(completed, what="the task completed", timeout_s=30)
        assert final["legs"][0]["status"] == "confirmed"
        assert final["legs"][0]["volunteer"]["id"]
        assert {"submitted", "dispatching", "in_progress", "completed"} <= final["transitions"].keys()

    # The leg's life, and estimates published as it is taken and picked up (at least one each).
    events = await events_of_task(stack.kafka_bootstrap, task_id, count=9)
    estimates = [e for e in events if e.type == "leg.eta_updated"]
    assert [e.data["leg_status"] for e in estimates][:2] == ["assigned", "picked_up"]
    assert [e.type for e in events if e.type != "leg.eta_updated"] == [
        "task.submitted",
        "leg.offered",
        "leg.assigned",
        "leg.picked_up",
        "leg.delivered",
        "leg.confirmed",
        "task.completed",
    ]
    assert {e.source for e in events} == {"/intake", "/dispatcher", "/notifier"}
    (assigned,) = [e for e in events if e.type == "leg.assigned"]
    assert assigned.data["speaks_dropoff_language"] is True, "an English speaker for an English recipient"
    raw = b"".join(e.to_bytes() for e in events)
    assert code.encode() not in raw and b"13900005678" not in raw, "no code or phone number in clear on Kafka"
