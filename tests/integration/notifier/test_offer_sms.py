"""A volunteer who asks for it gets an SMS when a new offer waits (browsers' push services do not
reach mainland China): one per offer, at most one per interval, in their language, the phone sealed.

The dispatcher's half runs for real (the running stack: preference, matcher, `leg.offered` read
from the topic); the notifier's half is driven with that very event, sending through its SMS
gateway channel to a local receiver.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.notifier.adapters.channels import Channel
from services.notifier.adapters.tables import RecipientMessageRow, outbox
from services.notifier.adapters.webhook_sender import WebhookSender
from services.notifier.service_layer.confirmations import Confirmer
from services.notifier.service_layer.delivery import DeliveryWorker
from services.notifier.service_layer.notifications import Notifications
from shared.crypto import seal, unseal
from shared.events import DISPATCH_TOPIC, CloudEvent, LegOffered, build_event
from shared.settings import Settings
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, somewhere
from tests.integration.notifier.conftest import Receiver
from tests.integration.notifier.factories import TaskScenario
from tests.integration.notifier.test_confirmations import consume
from tests.integration.notifier.test_recipient_messages import (  # noqa: F401 (fixtures)
    channels,
    smtp,
)

pytestmark = pytest.mark.e2e
PHONE = "+8613800001234"
Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def _offer_of(bootstrap: str, volunteer_id: str, task: dict[str, Any]) -> CloudEvent:
    """The `leg.offered` of this task's leg to this volunteer on the dispatch topic (by its task:
    the topic is ordered per task only)."""
    consumer = AIOKafkaConsumer(
        DISPATCH_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[CloudEvent] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not found:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    event = CloudEvent.from_bytes(record.value)
                    if (
                        event.type == "leg.offered"
                        and event.data["volunteer_id"] == volunteer_id
                        and event.data["task_id"] == task["id"]
                    ):
                        found.append(event)
    finally:
        await consumer.stop()
    assert len(found) == 1, found
    return found[0]


def _offer_for(scenario: TaskScenario, template: CloudEvent, **changes: Any) -> CloudEvent:
    """The dispatcher's event, for the notifier's own task (its private database knows that one)."""
    data = {**template.data, "task_id": scenario.task_id, "leg_id": scenario.leg_ids[0], **changes}
    return build_event(LegOffered.model_validate(data), source="/dispatcher", subject=scenario.task_id)[1]


def _sms_to_this_phone(receiver: Receiver) -> list[dict[str, Any]]:
    """The SMS the gateway received for this test's volunteer. The worker here sends whatever is due
    in the notifier's database, which the suite's other tests share: a message another test left due
    may go out through this test's gateway too."""
    sms = [json.loads(r.body) for r in receiver.requests]
    return [s for s in sms if s["to"] == PHONE]


async def _messages(sessionmaker: Maker, task_id: uuid.UUID) -> list[RecipientMessageRow]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(RecipientMessageRow).where(RecipientMessageRow.task_id == task_id)
        )
        return list(rows.scalars())


async def _notifier_with_a_task(
    settings: Settings,
    sessionmaker: Maker,
    channels: dict[str, Channel],  # noqa: F811
    offer_sms_min_interval_s: float,
) -> tuple[Notifications, TaskScenario]:
    """The notifier's offer handling, and a task of its own it has taken in."""
    notifications = Notifications(
        data_key=settings.data_key,
        webhook_max_attempts=3,
        channels=channels,
        offer_sms_min_interval_s=offer_sms_min_interval_s,
    )
    confirmer = Confirmer(max_failures=3, notifications=notifications)
    scenario = TaskScenario(settings, uuid.uuid4(), language="en")
    await consume(sessionmaker, confirmer.on_task_submitted, scenario.submitted())
    return notifications, scenario


async def _send_all(
    settings: Settings,
    sessionmaker: Maker,
    channels: dict[str, Channel],  # noqa: F811
    notifications: Notifications,
    task_id: uuid.UUID,
) -> list[RecipientMessageRow]:
    sender = WebhookSender(timeout_s=1.0, allow_private=True)
    await sender.open()
    worker = DeliveryWorker(
        settings=settings,
        sessionmaker=sessionmaker,
        sender=sender,
        channels=channels,
        notifications=notifications,
    )
    try:
        for _ in range(300):
            await worker.run_once()
            rows = await _messages(sessionmaker, task_id)
            if all(row.status != "pending" for row in rows):
                return rows
            await asyncio.sleep(0.02)
    finally:
        await sender.close()
    raise AssertionError("messages still pending")


async def test_a_volunteer_who_asked_gets_one_sms_per_offer_in_their_language_and_no_more_often(
    client: Client,
    stack: Stack,
    notifier_settings: Settings,
    sessionmaker: Maker,
    channels: dict[str, Channel],  # noqa: F811
    receiver: Receiver,
) -> None:
    operator = await client.organisation()
    place = somewhere()
    prefs = f"{client.dispatcher}/v1/me/preferences"

    # Without a phone on record there is nothing to send to: refused, naming the field.
    _, phoneless = await client.volunteer(operator, somewhere())
    status, problem = await client.call("PUT", prefs, phoneless, json={"sms_on_offer": True})
    assert (status, problem["title"]) == (409, "No phone on record")
    assert [e["field"] for e in problem["errors"]] == ["$.sms_on_offer"]
    status, problem = await client.call("PUT", prefs, phoneless, json={"sms_on_offer": "yes"})
    assert status == 422 and [e["field"] for e in problem["errors"]] == ["$.sms_on_offer"]
    status, problem = await client.call(
        "PUT", prefs, phoneless, json={"sms_on_offer": False, "language": "fr"}
    )
    assert status == 422 and [e["field"] for e in problem["errors"]] == ["$.language"]

    volunteer_id, token = await client.volunteer(operator, place, phone=PHONE)
    assert await client.call("GET", prefs, token) == (
        200,
        {"sms_on_offer": False, "sms_language": None, "has_phone": True},
    )
    answer = await client.call("PUT", prefs, token, json={"sms_on_offer": True, "language": "ko"})
    assert answer == (200, {"sms_on_offer": True, "sms_language": "ko", "has_phone": True})
    assert await client.call("GET", prefs, token) == answer
    assert (await client.call("GET", prefs, operator))[0] == 403

    offered = await _offer_of(stack.kafka_bootstrap, volunteer_id, await client.task(operator, place))
    assert PHONE.encode() not in offered.to_bytes() and b"13800001234" not in offered.to_bytes()
    assert unseal(notifier_settings.data_key, offered.data["sms_sealed"]) == {
        "phone": PHONE,
        "language": "ko",
    }

    # Switched off: the next offer carries nothing to send.
    status, _ = await client.call(
        "POST", f"{client.dispatcher}/v1/me/offers/{offered.data['offer_id']}/decline", token, json={}
    )
    assert status == 200
    assert (await client.call("PUT", prefs, token, json={"sms_on_offer": False}))[0] == 200
    quiet = await _offer_of(stack.kafka_bootstrap, volunteer_id, await client.task(operator, place))
    assert quiet.data.get("sms_sealed") is None

    # The notifier: the offer, replayed under another event id, then a second offer within the
    # interval: one SMS. A volunteer's offers without a seal: none.
    notifications, scenario = await _notifier_with_a_task(notifier_settings, sessionmaker, channels, 300)
    await consume(sessionmaker, notifications.on_leg_offered, _offer_for(scenario, offered))
    await consume(sessionmaker, notifications.on_leg_offered, _offer_for(scenario, offered))
    await consume(sessionmaker, notifications.on_leg_offered, _offer_for(scenario, quiet))
    await consume(
        sessionmaker, notifications.on_leg_offered, _offer_for(scenario, offered, offer_id=uuid.uuid4())
    )
    rows = await _send_all(notifier_settings, sessionmaker, channels, notifications, scenario.task_id)
    assert [(row.template, row.channel, row.language, row.status) for row in rows] == [
        ("offer_waiting", "sms", "ko", "sent")
    ]
    assert rows[0].address_sealed is None, "the sealed phone is forgotten once sent"
    sms = _sms_to_this_phone(receiver)
    assert [s["language"] for s in sms] == ["ko"]
    assert "새 배달 제안" in sms[0]["text"]
    assert "Hill" not in sms[0]["text"] and "Wang" not in sms[0]["text"], "nothing about the leg"
    async with sessionmaker() as session:
        payloads = (
            await session.execute(select(outbox.c.payload).where(outbox.c.key == str(scenario.task_id)))
        ).scalars()
        raw = b"".join(payloads)
    assert b"offer_waiting" in raw and b"13800001234" not in raw, "the notification events mask the phone"

    # Once the interval has passed, the next offer is another SMS.
    eager = Notifications(
        data_key=notifier_settings.data_key,
        webhook_max_attempts=3,
        channels=channels,
        offer_sms_min_interval_s=0,
    )
    await consume(sessionmaker, eager.on_leg_offered, _offer_for(scenario, offered, offer_id=uuid.uuid4()))
    rows = await _send_all(notifier_settings, sessionmaker, channels, eager, scenario.task_id)
    assert [row.status for row in rows] == ["sent", "sent"]
    assert len(_sms_to_this_phone(receiver)) == 2


async def test_an_offer_sms_not_sent_before_the_offer_closes_is_never_sent(
    notifier_settings: Settings,
    sessionmaker: Maker,
    channels: dict[str, Channel],  # noqa: F811
    receiver: Receiver,
) -> None:
    notifications, scenario = await _notifier_with_a_task(notifier_settings, sessionmaker, channels, 0)
    sealed = seal(notifier_settings.data_key, {"phone": PHONE, "language": "en"})

    def offer(expires_at: datetime) -> CloudEvent:
        data = LegOffered(
            task_id=scenario.task_id,
            leg_id=scenario.leg_ids[0],
            offer_id=uuid.uuid4(),
            volunteer_id=uuid.uuid4(),
            expires_at=expires_at,
            distance_m=300.0,
            sms_sealed=sealed,
        )
        return build_event(data, source="/dispatcher", subject=scenario.task_id)[1]

    # Read only after the offer closed (the notifier was behind): nothing is owed.
    await consume(sessionmaker, notifications.on_leg_offered, offer(datetime.now(UTC) - timedelta(seconds=1)))
    assert await _messages(sessionmaker, scenario.task_id) == []
    # Owed while the offer was open, but the offer closes before the worker gets to it.
    await consume(sessionmaker, notifications.on_leg_offered, offer(datetime.now(UTC) + timedelta(seconds=1)))
    (owed,) = await _messages(sessionmaker, scenario.task_id)
    assert owed.status == "pending" and owed.send_before is not None
    await asyncio.sleep(max(0.0, (owed.send_before - datetime.now(UTC)).total_seconds()) + 0.1)
    (row,) = await _send_all(notifier_settings, sessionmaker, channels, notifications, scenario.task_id)
    assert (row.status, row.attempts, row.address_sealed) == ("expired", 0, None)
    assert receiver.requests == [], "no SMS about an offer that has closed"
