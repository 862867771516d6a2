"""A leg under way: the recipient hears "on the way, about N minutes" once, and "delayed" at each slip;
operators' webhooks get a leg's own escalation with its reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from services.notifier.adapters.channels import Channel
from services.notifier.adapters.tables import RecipientMessageRow
from services.notifier.adapters.webhook_sender import WebhookSender
from services.notifier.service_layer.confirmations import Confirmer
from services.notifier.service_layer.delivery import DeliveryWorker
from services.notifier.service_layer.notifications import Notifications
from shared.events import CloudEvent, LegEtaUpdated, TaskEscalated, build_event
from shared.settings import Settings
from tests.integration.notifier.conftest import Receiver
from tests.integration.notifier.factories import TaskScenario
from tests.integration.notifier.test_confirmations import consume
from tests.integration.notifier.test_recipient_messages import (  # noqa: F401 (fixtures)
    Mailbox,
    _subject,
    channels,
    smtp,
)
from tests.integration.notifier.test_webhook_delivery import World, world  # noqa: F401 (fixture)


def eta_event(
    task: TaskScenario,
    *,
    status: str,
    in_minutes: float,
    late: bool = False,
    slipped: bool = False,
    slip: int = 0,
) -> CloudEvent:
    _, event = build_event(
        LegEtaUpdated(
            task_id=task.task_id,
            leg_id=task.leg_ids[0],
            volunteer_id=task.volunteer_id,
            leg_status=status,
            dropoff_eta=datetime.now().astimezone() + timedelta(minutes=in_minutes),
            late=late,
            slipped=slipped,
            slip=slip,
        ),
        source="/dispatcher",
        subject=task.task_id,
    )
    return event


async def send_all(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, Channel],  # noqa: F811
    task: TaskScenario,
    events: list[CloudEvent],
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
        for event in events:
            await consume(sessionmaker, notifications.on_consumed_event, event)
        for _ in range(300):
            await worker.run_once()
            async with sessionmaker() as session:
                rows = list(
                    (
                        await session.execute(
                            select(RecipientMessageRow)
                            .where(RecipientMessageRow.task_id == task.task_id)
                            .order_by(RecipientMessageRow.created_at)
                        )
                    ).scalars()
                )
            if rows and all(row.status != "pending" for row in rows):
                return rows
            await asyncio.sleep(0.02)
    finally:
        await sender.close()
    raise AssertionError("messages still pending")


async def test_on_the_way_once_at_pickup_and_delayed_once_per_slip_in_japanese(
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, Channel],  # noqa: F811
    smtp: tuple[Mailbox, int],  # noqa: F811
    receiver: Receiver,
) -> None:
    task = TaskScenario(notifier_settings, uuid.uuid4(), language="ja")
    leg_id = task.leg_ids[0]
    rows = await send_all(
        notifier_settings,
        sessionmaker,
        channels,
        task,
        [
            task.assigned(leg_id),
            eta_event(task, status="assigned", in_minutes=30),  # not yet picked up: no estimate told
            task.picked_up(leg_id),
            eta_event(task, status="picked_up", in_minutes=11.5),  # told: about 12 minutes
            eta_event(task, status="picked_up", in_minutes=20),  # refreshed: not told again
            eta_event(task, status="picked_up", in_minutes=40, late=True, slipped=True, slip=1),
            eta_event(task, status="picked_up", in_minutes=45, late=True),  # still late: no news
            eta_event(task, status="picked_up", in_minutes=5),  # back on time
            eta_event(task, status="picked_up", in_minutes=50, late=True, slipped=True, slip=2),
        ],
    )
    told = [(row.template, row.occasion, row.minutes) for row in rows if row.channel == "sms"]
    assert told == [
        ("volunteer_on_way", "", None),
        ("eta_on_way", "", 12),
        ("delayed", "1", 40),
        ("delayed", "2", 50),
    ]
    assert all(row.status == "sent" and row.language == "ja" for row in rows)
    texts = [json.loads(r.body)["text"] for r in receiver.requests]
    assert any("約12分で到着します" in text for text in texts)
    assert sum("お約束の時間より遅れ" in text for text in texts) == 2
    subjects = [_subject(m) for m in smtp[0].messages]
    assert subjects.count("お届けが遅れています") == 2 and subjects.count("お届け物が向かっています") == 1


async def test_on_the_way_is_in_english_for_an_english_speaker(
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: dict[str, Channel],  # noqa: F811
    receiver: Receiver,
) -> None:
    task = TaskScenario(notifier_settings, uuid.uuid4(), language="en", email=None)
    await send_all(
        notifier_settings, sessionmaker, channels, task, [eta_event(task, status="picked_up", in_minutes=7)]
    )
    assert [json.loads(r.body)["text"] for r in receiver.requests] == [
        "Hello! A volunteer has picked up your delivery and is on the way, arriving in about 7 minutes. "
        "Please have your confirmation code ready."
    ]


async def test_a_legs_own_escalation_reaches_the_operators_webhook_with_its_reason(
    world: World,  # noqa: F811
    receiver: Receiver,
) -> None:
    endpoint = await world.endpoint(receiver.url(), ["task.escalated"])
    task = TaskScenario(world.settings, world.organisation_id)
    await consume(world.sessionmaker, world.confirmer.on_task_submitted, task.submitted())
    _, escalated = build_event(
        TaskEscalated(
            task_id=task.task_id,
            leg_ids=[task.leg_ids[0]],
            reason="waited_too_long_picked_up",
            leg_status="picked_up",
        ),
        source="/dispatcher",
        subject=task.task_id,
    )
    await consume(world.sessionmaker, world.notifications.on_consumed_event, escalated)
    other = World(**{**world.__dict__, "organisation_id": uuid.uuid4()})
    other_task = TaskScenario(other.settings, other.organisation_id)
    await consume(other.sessionmaker, other.confirmer.on_task_submitted, other_task.submitted())
    rows = await world.work_until_settled(task.task_id)
    assert [(row.event_type, row.status) for row in rows] == [("task.escalated", "succeeded")]
    payload = Webhook(str(endpoint.secret)).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert payload["data"]["reason"] == "waited_too_long_picked_up"
    assert payload["data"]["leg_ids"] == [str(task.leg_ids[0])]
    assert await world.deliveries(other_task.task_id) == []
