"""Leg confirmation in the database: codes, photos, flags, one `task.completed` whatever the order."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.adapters.tables import LegRow, inbox, outbox
from services.notifier.service_layer.confirmations import Confirmer
from shared.events import CloudEvent
from shared.settings import Settings
from tests.integration.notifier.factories import TaskScenario

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


async def consume(
    sessionmaker: async_sessionmaker[AsyncSession], handler: Handler, event: CloudEvent
) -> None:
    """Apply an event the way the consumer does: inbox row and effect in one transaction."""
    async with sessionmaker() as session, session.begin():
        fresh = await session.scalar(
            insert(inbox)
            .values(consumer="notifier-test", event_id=event.id)
            .on_conflict_do_nothing()
            .returning(inbox.c.event_id)
        )
        if fresh is not None:
            await handler(session, event)


async def published(sessionmaker: async_sessionmaker[AsyncSession], task_id: uuid.UUID) -> list[CloudEvent]:
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(outbox.c.payload).where(outbox.c.key == str(task_id)).order_by(outbox.c.id)
            )
        ).scalars()
        return [CloudEvent.from_bytes(payload) for payload in rows]


async def test_right_code_confirms_and_completes_the_task(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    confirmer = Confirmer(max_failures=3)
    task = TaskScenario(notifier_settings, uuid.uuid4())
    await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
    await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(task.leg_ids[0]))
    events = await published(sessionmaker, task.task_id)
    assert [e.type for e in events] == ["leg.confirmed", "task.completed"]
    assert events[0].data["method"] == "code"
    assert events[1].data["leg_ids"] == [str(task.leg_ids[0])]


async def test_wrong_codes_count_attempts_and_flag_the_leg_after_the_configured_failures(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    confirmer = Confirmer(max_failures=3)
    task = TaskScenario(notifier_settings, uuid.uuid4())
    leg_id = task.leg_ids[0]
    await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
    for wrong in ("000001", "000002", "000003"):
        await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(leg_id, code=wrong))
    events = await published(sessionmaker, task.task_id)
    assert [(e.type, e.data["attempts"], e.data["flagged"]) for e in events] == [
        ("leg.confirmation_failed", 1, False),
        ("leg.confirmation_failed", 2, False),
        ("leg.confirmation_failed", 3, True),
    ]
    async with sessionmaker() as session:
        leg = await session.get(LegRow, leg_id)
    assert leg is not None and leg.flagged and leg.status == "open"


async def test_a_flagged_leg_refuses_further_codes_even_the_right_one(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    confirmer = Confirmer(max_failures=3)
    task = TaskScenario(notifier_settings, uuid.uuid4())
    leg_id = task.leg_ids[0]
    await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
    for wrong in ("000001", "000002", "000003"):
        await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(leg_id, code=wrong))
    await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(leg_id, code="000004"))
    await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(leg_id))
    events = await published(sessionmaker, task.task_id)
    assert [e.type for e in events] == ["leg.confirmation_failed"] * 3
    async with sessionmaker() as session:
        leg = await session.get(LegRow, leg_id)
    assert leg is not None and leg.flagged and leg.status == "open" and leg.failed_attempts == 3


async def test_no_contact_drop_off_is_confirmed_by_its_photo(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    confirmer = Confirmer(max_failures=3)
    task = TaskScenario(notifier_settings, uuid.uuid4(), no_contact=True)
    await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
    await consume(
        sessionmaker, confirmer.on_leg_delivered, task.delivered(task.leg_ids[0], photo_sha256="b" * 64)
    )
    events = await published(sessionmaker, task.task_id)
    assert [e.type for e in events] == ["leg.confirmed", "task.completed"]
    assert events[0].data["method"] == "photo" and events[0].data["photo_sha256"] == "b" * 64


async def test_a_photo_does_not_confirm_a_drop_off_that_needs_a_code(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    confirmer = Confirmer(max_failures=3)
    task = TaskScenario(notifier_settings, uuid.uuid4(), no_contact=False)
    await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
    await consume(
        sessionmaker, confirmer.on_leg_delivered, task.delivered(task.leg_ids[0], photo_sha256="b" * 64)
    )
    assert [e.type for e in await published(sessionmaker, task.task_id)] == ["leg.confirmation_failed"]


async def test_task_completed_exactly_once_in_every_order_with_duplicates(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Every order of: the task, both legs' reports, a redelivered report (same event) and a second report."""
    confirmer = Confirmer(max_failures=3)
    organisation_id = uuid.uuid4()
    orders = list(itertools.permutations(range(5)))
    tasks = []
    for order in orders:
        task = TaskScenario(notifier_settings, organisation_id, legs=2)
        first = task.delivered(task.leg_ids[0])
        steps: list[tuple[Handler, CloudEvent]] = [
            (confirmer.on_task_submitted, task.submitted()),
            (confirmer.on_leg_delivered, first),
            (confirmer.on_leg_delivered, task.delivered(task.leg_ids[1])),
            (confirmer.on_leg_delivered, first),  # Kafka redelivers the same record
            (confirmer.on_leg_delivered, task.delivered(task.leg_ids[0])),  # the volunteer reports twice
        ]
        for index in order:
            await consume(sessionmaker, *steps[index])
        tasks.append(task)
    for order, task in zip(orders, tasks, strict=True):
        types = [e.type for e in await published(sessionmaker, task.task_id)]
        assert types.count("task.completed") == 1, order
        assert types.count("leg.confirmed") == 2, order
        assert types[-1] == "task.completed", order


async def test_handlers_are_idempotent_without_the_inbox(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Even if the same events were applied twice (another consumer group replaying), one completion."""
    confirmer = Confirmer(max_failures=3)
    task = TaskScenario(notifier_settings, uuid.uuid4())
    submitted, delivered = task.submitted(), task.delivered(task.leg_ids[0])
    for handler, event in [
        (confirmer.on_leg_delivered, delivered),
        (confirmer.on_task_submitted, submitted),
        (confirmer.on_task_submitted, submitted),
        (confirmer.on_leg_delivered, delivered),
    ]:
        async with sessionmaker() as session, session.begin():
            await handler(session, event)
    assert [e.type for e in await published(sessionmaker, task.task_id)] == [
        "leg.confirmed",
        "task.completed",
    ]
