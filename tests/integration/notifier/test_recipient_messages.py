"""Recipients hear, in their language, that a volunteer is on the way and that the delivery arrived."""

from __future__ import annotations

import asyncio
import email
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from email.header import decode_header, make_header
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.adapters.channels import Channel, EmailChannel, SmsGatewayChannel
from services.notifier.adapters.tables import RecipientMessageRow, outbox
from services.notifier.adapters.webhook_sender import WebhookSender
from services.notifier.service_layer.confirmations import Confirmer
from services.notifier.service_layer.delivery import DeliveryWorker
from services.notifier.service_layer.notifications import Notifications
from shared.events import CloudEvent
from shared.settings import Settings
from tests.integration.notifier.conftest import Receiver
from tests.integration.notifier.factories import TaskScenario
from tests.integration.notifier.test_confirmations import consume


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
async def channels(
    notifier_settings: Settings, smtp: tuple[Mailbox, int], receiver: Receiver
) -> AsyncIterator[dict[str, Channel]]:
    sms = SmsGatewayChannel(url=receiver.url("/sms"), token="gw-token", timeout_s=1.0)
    await sms.open()
    try:
        yield {
            "sms": sms,
            "email": EmailChannel(
                host="127.0.0.1", port=smtp[1], sender="errands@example.org", timeout_s=2.0
            ),
        }
    finally:
        await sms.close()


async def _run(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, Channel],
    task: TaskScenario,
) -> list[RecipientMessageRow]:
    notifications = Notifications(data_key=settings.data_key, webhook_max_attempts=3, channels=channels)
    confirmer = Confirmer(max_failures=3, notifications=notifications)
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
        await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
        await consume(sessionmaker, notifications.on_consumed_event, task.assigned(task.leg_ids[0]))
        await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(task.leg_ids[0]))
        for _ in range(300):
            await worker.run_once()
            async with sessionmaker() as session:
                rows = list(
                    (
                        await session.execute(
                            select(RecipientMessageRow).where(RecipientMessageRow.task_id == task.task_id)
                        )
                    ).scalars()
                )
            if rows and all(row.status != "pending" for row in rows):
                return rows
            await asyncio.sleep(0.02)
    finally:
        await sender.close()
    raise AssertionError("messages still pending")


async def _notification_events(
    sessionmaker: async_sessionmaker[AsyncSession], task_id: uuid.UUID
) -> list[CloudEvent]:
    async with sessionmaker() as session:
        payloads = (
            await session.execute(
                select(outbox.c.payload).where(
                    outbox.c.key == str(task_id), outbox.c.event_type.like("notification.%")
                )
            )
        ).scalars()
        return [CloudEvent.from_bytes(p) for p in payloads]


def _subject(message: email.message.Message) -> str:
    return str(make_header(decode_header(message["Subject"])))


async def test_recipient_gets_both_messages_by_sms_and_email_in_korean(
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, Channel],
    smtp: tuple[Mailbox, int],
    receiver: Receiver,
) -> None:
    task = TaskScenario(notifier_settings, uuid.uuid4(), language="ko")
    rows = await _run(notifier_settings, sessionmaker, channels, task)
    assert sorted((row.template, row.channel, row.status) for row in rows) == [
        ("delivery_arrived", "email", "sent"),
        ("delivery_arrived", "sms", "sent"),
        ("volunteer_on_way", "email", "sent"),
        ("volunteer_on_way", "sms", "sent"),
    ]
    mailbox, _ = smtp
    assert mailbox.recipients == [["wang.fang@example.org"], ["wang.fang@example.org"]]
    assert sorted(_subject(m) for m in mailbox.messages) == sorted(
        ["자원봉사자가 가는 중입니다", "배달이 완료되었습니다"]
    )
    sms = [json.loads(r.body) for r in receiver.requests]
    assert [s["to"] for s in sms] == ["+8613900005678", "+8613900005678"]
    assert all(s["language"] == "ko" for s in sms)
    # The two messages may reach the gateway in either order; only the first names the volunteer.
    assert sorted("자원봉사자" in s["text"] for s in sms) == [False, True]
    assert all(r.headers["Authorization"] == "Bearer gw-token" for r in receiver.requests)

    events = await _notification_events(sessionmaker, task.task_id)
    assert sorted((e.type, e.data["channel"], e.data["template"]) for e in events) == [
        ("notification.sent", "email", "delivery_arrived"),
        ("notification.sent", "email", "volunteer_on_way"),
        ("notification.sent", "sms", "delivery_arrived"),
        ("notification.sent", "sms", "volunteer_on_way"),
    ]
    raw = b"".join(e.to_bytes() for e in events)
    assert b"13900005678" not in raw and b"wang.fang@" not in raw
    assert {e.data["recipient_masked"] for e in events} == {"+86*******5678", "w********@example.org"}


async def test_an_unsupported_language_falls_back_to_chinese(
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, Channel],
    smtp: tuple[Mailbox, int],
) -> None:
    task = TaskScenario(notifier_settings, uuid.uuid4(), language="fr", phone=None)
    rows = await _run(notifier_settings, sessionmaker, channels, task)
    assert {(row.channel, row.language) for row in rows} == {("email", "zh")}
    assert sorted(_subject(m) for m in smtp[0].messages) == sorted(["志愿者正在路上", "物资已送达"])


async def test_a_failing_gateway_ends_in_notification_failed(
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, Channel],
    receiver: Receiver,
) -> None:
    receiver.answers = [(500, {})] * 10
    task = TaskScenario(notifier_settings, uuid.uuid4(), email=None, language="ja")
    rows = await _run(notifier_settings, sessionmaker, channels, task)
    assert {(row.channel, row.status, row.attempts) for row in rows} == {
        ("sms", "failed", notifier_settings.notification_max_attempts)
    }
    events = await _notification_events(sessionmaker, task.task_id)
    assert sorted(e.type for e in events) == ["notification.failed", "notification.failed"]
    assert all(
        e.data["error"] == "SMS gateway answered HTTP 500" and e.data["language"] == "ja" for e in events
    )
