"""The shared outbox relay and consumer loop against the real database and broker.

Each test works in a schema and on topics of its own, so the services of other tests never see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownMemberIdError
from aiokafka.protocol.group import HeartbeatRequest
from sqlalchemy import Column, MetaData, Table, Text, func, insert, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.consumer import BatchHandler, EventConsumer, Handler, NotReady, PermanentError, inbox_table
from shared.db import create_engine, create_sessionmaker, schema_metadata
from shared.events import DEADLETTER_TOPIC, CloudEvent
from shared.kafka import create_producer
from shared.listen import PgListener
from shared.outbox import OutboxRelay, add_events, outbox_table, resend_retained
from shared.settings import Settings
from tests.conftest import Stack


@dataclass
class Scratch:
    """A private schema with an outbox, an inbox and an `effects` table, plus a private topic."""

    schema: str
    topic: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    outbox: Table
    inbox: Table
    effects: Table
    producer: AIOKafkaProducer


@pytest.fixture
async def scratch(stack: Stack) -> AsyncIterator[Scratch]:
    schema = f"scratch_{uuid.uuid4().hex[:8]}"
    topic = f"test.{schema}"
    settings = stack.settings()
    metadata: MetaData = schema_metadata(schema)
    outbox = outbox_table(metadata)
    inbox = inbox_table(metadata)
    effects = Table("effects", metadata, Column("event_id", UUID(as_uuid=True)), Column("note", Text))
    engine = create_engine(settings, pool_size=5)
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE SCHEMA {schema}"))
        await connection.run_sync(metadata.create_all)
        await connection.execute(
            text(
                f"CREATE FUNCTION {schema}.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM pg_notify('{schema}_outbox', ''); RETURN NULL; END $$"
            )
        )
        await connection.execute(
            text(
                f"CREATE TRIGGER outbox_inserted AFTER INSERT ON {schema}.outbox "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_outbox()"
            )
        )
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    await admin.close()
    producer = create_producer(settings, client_id="test")
    await producer.start()
    try:
        yield Scratch(schema, topic, engine, create_sessionmaker(engine), outbox, inbox, effects, producer)
    finally:
        await producer.stop()
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await engine.dispose()


def _consumer(
    scratch: Scratch,
    *,
    settings: Settings,
    group_id: str,
    handlers: dict[str, Handler],
    batch_handlers: dict[str, BatchHandler] | None = None,
) -> EventConsumer:
    """A consumer of the scratch topic, with the scratch schema's inbox and producer."""
    return EventConsumer(
        settings=settings,
        group_id=group_id,
        topics=(scratch.topic,),
        handlers=handlers,
        batch_handlers=batch_handlers,
        sessionmaker=scratch.sessionmaker,
        inbox=scratch.inbox,
        producer=scratch.producer,
    )


def _event(note: str = "x") -> CloudEvent:
    return CloudEvent(source="/test", type="test.happened", subject=str(uuid.uuid4()), data={"note": note})


async def _read_topic(bootstrap: str, topic: str, *, want: int, timeout_s: float = 20.0) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"reader-{uuid.uuid4()}", auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list = []  # type: ignore[type-arg]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < want and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_relay_publishes_committed_rows_once_and_empties_the_outbox(
    stack: Stack, scratch: Scratch
) -> None:
    listener = PgListener(stack.settings().asyncpg_dsn)
    relay = OutboxRelay(
        outbox=scratch.outbox,
        sessionmaker=scratch.sessionmaker,
        producer=scratch.producer,
        listener=listener,
        idle_poll_s=30,  # only NOTIFY can wake it in time
    )
    await listener.start()
    running = asyncio.create_task(relay.run())
    events = [_event(str(i)) for i in range(25)]
    try:
        async with scratch.sessionmaker() as session, session.begin():
            await add_events(session, scratch.outbox, [(scratch.topic, e) for e in events])
        # A rolled-back transaction publishes nothing.
        async with scratch.sessionmaker() as session:
            await session.begin()
            await add_events(session, scratch.outbox, [(scratch.topic, _event("rolled back"))])
            await session.rollback()
        records = await _read_topic(stack.kafka_bootstrap, scratch.topic, want=25)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await listener.stop()
    published = [CloudEvent.from_bytes(r.value) for r in records]
    assert sorted(str(e.id) for e in published) == sorted(str(e.id) for e in events)
    assert all(r.key == CloudEvent.from_bytes(r.value).subject.encode() for r in records)
    async with scratch.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(scratch.outbox)) == 0


async def test_two_relays_never_publish_the_same_row(stack: Stack, scratch: Scratch) -> None:
    listener = PgListener(stack.settings().asyncpg_dsn)
    relays = [
        OutboxRelay(
            outbox=scratch.outbox,
            sessionmaker=scratch.sessionmaker,
            producer=scratch.producer,
            listener=listener,
            batch_size=7,
        )
        for _ in range(2)
    ]
    async with scratch.sessionmaker() as session, session.begin():
        await add_events(session, scratch.outbox, [(scratch.topic, _event(str(i))) for i in range(60)])
    total = 0
    for _ in range(30):  # concurrent rounds: one relay wins each, the other finds the outbox taken
        sent = await asyncio.gather(*(r.publish_batch() for r in relays))
        assert 0 in sent
        total += sum(sent)
    assert total == 60
    records = await _read_topic(stack.kafka_bootstrap, scratch.topic, want=60, timeout_s=5)
    ids = [CloudEvent.from_bytes(r.value).id for r in records]
    assert len(ids) == len(set(ids)) == 60


async def test_a_relay_with_retention_keeps_published_rows_and_sends_each_once(
    stack: Stack, scratch: Scratch
) -> None:
    relay = OutboxRelay(
        outbox=scratch.outbox,
        sessionmaker=scratch.sessionmaker,
        producer=scratch.producer,
        listener=PgListener(stack.settings().asyncpg_dsn),
        batch_size=7,
        retention_s=3600,
    )
    async with scratch.sessionmaker() as session, session.begin():
        await add_events(session, scratch.outbox, [(scratch.topic, _event(str(i))) for i in range(20)])
    while await relay.publish_batch():
        pass
    assert await relay.publish_batch() == 0  # kept rows are never claimed again
    async with scratch.sessionmaker() as session:
        kept = await session.scalar(
            select(func.count()).select_from(scratch.outbox).where(scratch.outbox.c.published_at.is_not(None))
        )
        assert kept == 20
        # The claim reads only the partial index of unpublished rows, however many are kept.
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            await session.scalars(
                text(
                    f"EXPLAIN SELECT id FROM {scratch.schema}.outbox WHERE published_at IS NULL "  # noqa: S608
                    "ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED"
                )
            )
        )
        assert "ix_outbox_unpublished" in plan
    records = await _read_topic(stack.kafka_bootstrap, scratch.topic, want=20, timeout_s=5)
    ids = [CloudEvent.from_bytes(r.value).id for r in records]
    assert len(ids) == len(set(ids)) == 20


async def test_retained_events_are_sent_again_and_those_past_the_retention_are_purged(
    stack: Stack, scratch: Scratch
) -> None:
    relay = OutboxRelay(
        outbox=scratch.outbox,
        sessionmaker=scratch.sessionmaker,
        producer=scratch.producer,
        listener=PgListener(stack.settings().asyncpg_dsn),
        retention_s=3600,
    )
    old, recent = [_event("old") for _ in range(3)], [_event("recent") for _ in range(4)]
    async with scratch.sessionmaker() as session, session.begin():
        await add_events(session, scratch.outbox, [(scratch.topic, e) for e in old + recent])
    assert await relay.publish_batch() == 7
    async with scratch.sessionmaker() as session, session.begin():
        await session.execute(
            scratch.outbox.update()
            .where(scratch.outbox.c.event_id.in_([e.id for e in old]))
            .values(published_at=func.now() - text("interval '2 hours'"))
        )
    async with scratch.sessionmaker() as session, session.begin():
        assert await resend_retained(session, scratch.outbox, retention_s=3600) == 4
    assert await relay.publish_batch() == 4
    records = await _read_topic(stack.kafka_bootstrap, scratch.topic, want=11, timeout_s=5)
    sent = [CloudEvent.from_bytes(r.value).id for r in records]
    assert sorted(map(str, sent)) == sorted([str(e.id) for e in old] + [str(e.id) for e in recent] * 2)
    async with scratch.sessionmaker() as session, session.begin():
        await session.execute(
            scratch.outbox.update().values(published_at=func.now() - text("interval '2 hours'"))
        )
    assert await relay.purge_published() == 4
    async with scratch.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(scratch.outbox)) == 0


async def _consume_until(consumer: EventConsumer, condition: Any, timeout_s: float = 30.0) -> None:
    running = asyncio.create_task(consumer.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await condition():
            assert loop.time() < deadline, "consumer did not get there in time"
            assert not running.done(), running
            await asyncio.sleep(0.1)
    finally:
        consumer.stop()
        await asyncio.wait_for(running, timeout=15)


async def test_consumer_applies_each_event_once_and_dead_letters_poison(
    stack: Stack, scratch: Scratch
) -> None:
    attempts: dict[str, int] = {}

    async def handler(session: AsyncSession, event: CloudEvent) -> None:
        note = event.data["note"]
        attempts[note] = attempts.get(note, 0) + 1
        if note == "always fails":
            raise RuntimeError("boom")
        if note == "contradiction":
            raise PermanentError("refers to an unknown task")
        if note == "fails once" and attempts[note] == 1:
            raise RuntimeError("transient")
        await session.execute(insert(scratch.effects).values(event_id=event.id, note=note))

    group = f"group-{scratch.schema}"
    consumer = _consumer(
        scratch,
        settings=stack.settings(consumer_max_attempts=3, consumer_retry_backoff_s=0.01),
        group_id=group,
        handlers={"test.happened": handler},
    )
    same_key = b"one-task"
    good = _event("good")
    for value in (
        good.to_bytes(),
        good.to_bytes(),  # a re-published duplicate
        b"{not json",
        _event("always fails").to_bytes(),
        _event("contradiction").to_bytes(),
        _event("fails once").to_bytes(),
        CloudEvent(source="/test", type="test.unhandled", subject="s", data={}).to_bytes(),
        _event("last").to_bytes(),
    ):
        await scratch.producer.send_and_wait(scratch.topic, value=value, key=same_key)

    async def all_good_effects() -> bool:
        async with scratch.sessionmaker() as session:
            notes = (await session.execute(select(scratch.effects.c.note))).scalars().all()
        return sorted(notes) == ["fails once", "good", "last"]

    await _consume_until(consumer, all_good_effects)
    assert attempts["always fails"] == 3, "bounded retries"
    assert attempts["contradiction"] == 1, "a permanent error is not retried"
    assert attempts["good"] == 1, "the duplicate was skipped by the inbox"

    dead = [
        r
        for r in await _read_topic(stack.kafka_bootstrap, DEADLETTER_TOPIC, want=10_000, timeout_s=3)
        if dict(r.headers).get("errands-origin-topic") == scratch.topic.encode()
    ]
    assert len(dead) == 3
    headers = [dict(r.headers) for r in dead]
    assert {h["errands-consumer-group"] for h in headers} == {group.encode()}
    assert sorted(int(h["errands-attempts"]) for h in headers) == [1, 1, 3]
    assert all(h["errands-origin-offset"] and h["errands-error"] for h in headers)
    assert b"{not json" in [r.value for r in dead]

    # Everything up to the end of the partition is committed: a restart re-reads nothing.
    probe = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await probe.start()
    try:
        partition = int(headers[0]["errands-origin-partition"])
        committed = await probe.committed(TopicPartition(scratch.topic, partition))
    finally:
        await probe.stop()
    assert committed == 8


async def test_a_fetched_batch_is_applied_in_few_transactions_and_a_bad_record_falls_back_one_by_one(
    stack: Stack, scratch: Scratch
) -> None:
    transactions: list[int] = []
    calls: dict[str, int] = {}

    async def handler(session: AsyncSession, event: CloudEvent) -> None:
        if "n" not in session.info:
            session.info["n"] = len(transactions)
            transactions.append(session.info["n"])
        note = event.data["note"]
        calls[note] = calls.get(note, 0) + 1
        if note == "contradiction":
            raise PermanentError("refers to an unknown task")
        await session.execute(insert(scratch.effects).values(event_id=event.id, note=note))

    consumer = _consumer(
        scratch,
        settings=stack.settings(consumer_max_attempts=3, consumer_retry_backoff_s=0.01),
        group_id=f"group-{scratch.schema}",
        handlers={"test.happened": handler},
    )
    many = [_event(f"e{i}") for i in range(60)]
    for event in [*many, many[7]]:  # the last one re-published
        await scratch.producer.send(scratch.topic, value=event.to_bytes(), key=b"one-task")
    await scratch.producer.flush()
    tail = [_event("before"), _event("contradiction"), _event("after")]

    async def notes() -> list[str]:
        async with scratch.sessionmaker() as session:
            return sorted((await session.execute(select(scratch.effects.c.note))).scalars().all())

    running = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(60):
            while len(await notes()) < 60:
                await asyncio.sleep(0.1)
            batched = len(transactions)
            for event in tail:
                await scratch.producer.send_and_wait(scratch.topic, value=event.to_bytes(), key=b"one-task")
            while len(await notes()) < 62:
                await asyncio.sleep(0.1)
    finally:
        consumer.stop()
        await asyncio.wait_for(running, timeout=15)
    assert await notes() == sorted([f"e{i}" for i in range(60)] + ["before", "after"])
    assert batched <= 10, f"60 events took {batched} transactions"
    assert calls["contradiction"] <= 2, "tried in its batch, then once alone, never retried"
    dead = [
        r
        for r in await _read_topic(stack.kafka_bootstrap, DEADLETTER_TOPIC, want=10_000, timeout_s=3)
        if dict(r.headers).get("errands-origin-topic") == scratch.topic.encode()
    ]
    assert [CloudEvent.from_bytes(r.value).data["note"] for r in dead] == ["contradiction"]


async def test_one_fetch_of_several_partitions_is_applied_in_one_transaction_each_partition_in_order(
    stack: Stack, scratch: Scratch
) -> None:
    transaction_of: dict[str, int] = {}
    transactions: list[int] = []

    async def handler(session: AsyncSession, event: CloudEvent) -> None:
        if "n" not in session.info:
            session.info["n"] = len(transactions)
            transactions.append(session.info["n"])
        transaction_of[event.data["note"]] = session.info["n"]
        await session.execute(insert(scratch.effects).values(event_id=event.id, note=event.data["note"]))

    consumer = _consumer(
        scratch,
        settings=stack.settings(),
        group_id=f"group-{scratch.schema}",
        handlers={"test.happened": handler},
    )
    # Two tasks' events on the topic's two partitions, published before the consumer starts.
    partition_of: dict[str, int] = {}
    order: dict[int, list[str]] = {}
    for i in range(40):
        note = f"e{i:02}"
        await scratch.producer.send_and_wait(
            scratch.topic, value=_event(note).to_bytes(), key=b"task-%d" % (i % 2), partition=i % 2
        )
        partition_of[note] = i % 2
        order.setdefault(i % 2, []).append(note)
    applied: list[str] = []

    async def effects() -> list[str]:
        async with scratch.sessionmaker() as session:
            return list((await session.execute(select(scratch.effects.c.note))).scalars().all())

    running = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(60):
            while len(applied := await effects()) < 40:
                await asyncio.sleep(0.1)
    finally:
        consumer.stop()
        await asyncio.wait_for(running, timeout=15)
    assert sorted(applied) == sorted(partition_of)
    together: dict[int, set[int]] = {}
    for note, n in transaction_of.items():
        together.setdefault(n, set()).add(partition_of[note])
    assert any(len(partitions) == 2 for partitions in together.values()), "both partitions in one transaction"
    for notes in order.values():
        taken = [transaction_of[note] for note in notes]
        assert taken == sorted(taken), "a partition's events never go before an earlier one's"


async def test_a_batch_handler_takes_consecutive_fresh_events_of_its_type_together_in_order(
    stack: Stack, scratch: Scratch
) -> None:
    applied: list[str] = []
    together: list[int] = []

    async def one(session: AsyncSession, event: CloudEvent) -> None:
        applied.append(event.data["note"])
        await session.execute(insert(scratch.effects).values(event_id=event.id, note=event.data["note"]))

    async def many(session: AsyncSession, events: list[CloudEvent]) -> None:
        applied.extend(e.data["note"] for e in events)
        together.append(len(events))
        await session.execute(
            insert(scratch.effects), [{"event_id": e.id, "note": e.data["note"]} for e in events]
        )

    consumer = _consumer(
        scratch,
        settings=stack.settings(),
        group_id=f"group-{scratch.schema}",
        handlers={"test.happened": one, "test.other": one},
        batch_handlers={"test.happened": many},
    )
    between = CloudEvent(
        source="/test", type="test.other", subject=str(uuid.uuid4()), data={"note": "between"}
    )
    events = [*(_event(f"a{i:02}") for i in range(30)), between, *(_event(f"b{i:02}") for i in range(30))]
    await _consume_all(scratch, consumer, events, again=events[3])
    assert applied == [e.data["note"] for e in events], "each once, in the partition's order"
    assert max(together) > 1, "a fetched run of them went in one call"


async def test_events_of_types_sharing_a_batch_handler_go_to_it_together(
    stack: Stack, scratch: Scratch
) -> None:
    calls: list[list[str]] = []

    async def one(session: AsyncSession, event: CloudEvent) -> None:
        await many(session, [event])

    async def many(session: AsyncSession, events: list[CloudEvent]) -> None:
        calls.append([e.type for e in events])
        await session.execute(
            insert(scratch.effects), [{"event_id": e.id, "note": e.data["note"]} for e in events]
        )

    consumer = _consumer(
        scratch,
        settings=stack.settings(),
        group_id=f"group-{scratch.schema}",
        handlers={"test.happened": one, "test.other": one},
        batch_handlers={"test.happened": many, "test.other": many},
    )
    events = [
        CloudEvent(source="/test", type=kind, subject=str(uuid.uuid4()), data={"note": f"{i:02}"})
        for i in range(40)
        for kind in ("test.happened", "test.other")
    ]
    await _consume_all(scratch, consumer, events, again=events[5])
    assert [kind for call in calls for kind in call] == [e.type for e in events], "each once, in order"
    assert any(set(call) == {"test.happened", "test.other"} for call in calls), "both types in one call"


async def _consume_all(
    scratch: Scratch, consumer: EventConsumer, events: list[CloudEvent], *, again: CloudEvent
) -> None:
    """Publish `events` (then `again` a second time) on one partition and run `consumer` until each
    has left its effect, and a moment more; exactly one effect each."""
    for event in [*events, again]:
        await scratch.producer.send(scratch.topic, value=event.to_bytes(), key=b"one-task")
    await scratch.producer.flush()

    async def count() -> int:
        async with scratch.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(scratch.effects)) or 0)

    running = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(60):
            while await count() < len(events):
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # the re-published one, had it been applied again
    finally:
        consumer.stop()
        await asyncio.wait_for(running, timeout=15)
    assert await count() == len(events)


async def test_inbox_forgets_only_event_ids_older_than_its_retention(stack: Stack, scratch: Scratch) -> None:
    consumer = _consumer(
        scratch,
        settings=stack.settings(inbox_retention_s=3600),
        group_id="purging",
        handlers={},
    )
    old, recent, other_group = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with scratch.sessionmaker() as session, session.begin():
        await session.execute(
            insert(scratch.inbox),
            [
                {"consumer": "purging", "event_id": old, "received_at": now - timedelta(hours=2)},
                {"consumer": "purging", "event_id": recent, "received_at": now},
                {"consumer": "another", "event_id": other_group, "received_at": now - timedelta(days=2)},
            ],
        )
    await consumer._purge_inbox()
    async with scratch.sessionmaker() as session:
        left = set((await session.execute(select(scratch.inbox.c.event_id))).scalars())
    assert left == {recent, other_group}


async def test_a_record_the_database_refuses_as_data_is_dead_lettered_at_once(
    stack: Stack, scratch: Scratch
) -> None:
    calls: dict[str, list[float]] = {}

    async def handler(session: AsyncSession, event: CloudEvent) -> None:
        note = event.data["note"]
        calls.setdefault(note, []).append(asyncio.get_running_loop().time())
        if note == "year 0":  # what a deliver_by of 0001-01-01T00:00:00+23:59 came to
            await session.execute(text("SELECT make_date(0, 1, 1)"))
        await session.execute(insert(scratch.effects).values(event_id=event.id, note=note))

    consumer = _consumer(
        scratch,
        settings=stack.settings(consumer_max_attempts=5, consumer_retry_backoff_s=10.0),
        group_id=f"group-{scratch.schema}",
        handlers={"test.happened": handler},
    )
    for note in ("year 0", "after"):
        await scratch.producer.send_and_wait(scratch.topic, value=_event(note).to_bytes(), partition=0)

    async def after_applied() -> bool:
        async with scratch.sessionmaker() as session:
            return "after" in (await session.execute(select(scratch.effects.c.note))).scalars().all()

    await _consume_until(consumer, after_applied)
    assert calls["after"][-1] - calls["year 0"][0] < 3.0, "no retry backoff before the dead letter"
    assert len(calls["year 0"]) <= 2, "tried in its batch, then once alone, never retried"
    dead = [
        dict(r.headers)
        for r in await _read_topic(stack.kafka_bootstrap, DEADLETTER_TOPIC, want=10_000, timeout_s=3)
        if dict(r.headers).get("errands-origin-topic") == scratch.topic.encode()
    ]
    assert len(dead) == 1
    assert dead[0]["errands-attempts"] == b"1"
    assert b"out of range" in dead[0]["errands-error"]


async def test_a_record_retrying_on_one_partition_holds_back_only_its_own_partition(
    stack: Stack, scratch: Scratch
) -> None:
    calls: dict[str, list[float]] = {}

    async def handler(session: AsyncSession, event: CloudEvent) -> None:
        note = event.data["note"]
        calls.setdefault(note, []).append(asyncio.get_running_loop().time())
        if note == "always fails":
            raise RuntimeError("boom")
        await session.execute(insert(scratch.effects).values(event_id=event.id, note=note))

    group = f"group-{scratch.schema}"
    consumer = _consumer(
        scratch,
        settings=stack.settings(consumer_max_attempts=3, consumer_retry_backoff_s=2.0),
        group_id=group,
        handlers={"test.happened": handler},  # 2 s, then 4 s
    )

    async def notes() -> list[str]:
        async with scratch.sessionmaker() as session:
            return sorted((await session.execute(select(scratch.effects.c.note))).scalars().all())

    await scratch.producer.send_and_wait(scratch.topic, value=_event("always fails").to_bytes(), partition=0)
    running = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(60):
            while "always fails" not in calls:  # joined the group and tried it once
                await asyncio.sleep(0.05)
            # Behind the failing record on its own partition, and on the other partition.
            await scratch.producer.send_and_wait(
                scratch.topic, value=_event("behind").to_bytes(), partition=0
            )
            await scratch.producer.send_and_wait(scratch.topic, value=_event("other").to_bytes(), partition=1)
            while len(await notes()) < 2:
                await asyncio.sleep(0.05)
    finally:
        consumer.stop()
        await asyncio.wait_for(running, timeout=15)
    assert await notes() == ["behind", "other"]
    failing = calls["always fails"]
    assert len(failing) == 3
    assert calls["other"][0] < failing[1], "the other partition did not wait for the retries"
    assert calls["behind"][0] > failing[-1], "its own partition kept its order"
    probe = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await probe.start()
    try:
        assert await probe.committed(TopicPartition(scratch.topic, 0)) == 2
        assert await probe.committed(TopicPartition(scratch.topic, 1)) == 1
    finally:
        await probe.stop()


async def test_a_consumer_is_ready_only_once_it_owns_its_partitions_and_has_caught_up(
    stack: Stack, scratch: Scratch
) -> None:
    release = asyncio.Event()

    async def slow_handler(session: AsyncSession, event: CloudEvent) -> None:
        await release.wait()
        await session.execute(insert(scratch.effects).values(event_id=event.id, note=event.data["note"]))

    for event in [_event(f"waiting {i}") for i in range(5)]:
        await scratch.producer.send(scratch.topic, value=event.to_bytes(), key=b"one-task")
    await scratch.producer.flush()
    consumer = _consumer(
        scratch,
        settings=stack.settings(),
        group_id=f"ready-{scratch.schema}",
        handlers={"test.happened": slow_handler},
    )
    with pytest.raises(NotReady, match="no partitions assigned yet"):
        await consumer.readiness()
    running = asyncio.create_task(consumer.run())
    try:

        async def past_assignment() -> str:
            try:
                await consumer.readiness()
            except NotReady as exc:
                return str(exc)
            return "ready"

        deadline = asyncio.get_running_loop().time() + 60
        while "no partitions assigned yet" in (state := await past_assignment()):
            assert asyncio.get_running_loop().time() < deadline, "the group never assigned partitions"
            await asyncio.sleep(0.1)
        # How many depends on the broker's end offsets (Tansu's can trail the last batch's records).
        assert re.fullmatch(rf"consumer ready-{scratch.schema}: \d+ records behind where it started", state)
        release.set()
        while (state := await past_assignment()) != "ready":
            assert asyncio.get_running_loop().time() < deadline, state
            await asyncio.sleep(0.1)
        async with scratch.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(scratch.effects)) == 5
    finally:
        release.set()
        consumer.stop()
        await asyncio.wait_for(running, timeout=30)


async def test_a_relay_is_ready_once_a_pass_over_its_outbox_went_through(
    stack: Stack, scratch: Scratch
) -> None:
    listener = PgListener(stack.settings().asyncpg_dsn)
    relay = OutboxRelay(
        outbox=scratch.outbox, sessionmaker=scratch.sessionmaker, producer=scratch.producer, listener=listener
    )
    with pytest.raises(NotReady, match="not publishing"):
        await relay.readiness()
    await listener.start()
    running = asyncio.create_task(relay.run())
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                await relay.readiness()
                break
            except NotReady:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await listener.stop()


async def test_a_stopped_consumer_leaves_its_group_even_in_the_first_generation(
    stack: Stack, scratch: Scratch
) -> None:
    """Tansu numbers generations from 0, where aiokafka's `stop` does not leave: the loop leaves itself,
    so a member restarted at once does not wait on the session of the one it replaces."""
    group = f"leave-{scratch.schema}"
    # A session long enough that only leaving, not timing out, can take the member out here.
    settings = stack.settings(consumer_session_timeout_ms=8_000, consumer_heartbeat_interval_ms=500)
    consumer = _consumer(
        scratch,
        settings=settings,
        group_id=group,
        handlers={},
    )
    running = asyncio.create_task(consumer.run())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while consumer._assignment is None:
            assert asyncio.get_running_loop().time() < deadline, "the group never assigned partitions"
            await asyncio.sleep(0.05)
        assert consumer._consumer is not None
        coordinator = consumer._consumer._coordinator
        generation, member_id = coordinator.generation, coordinator.member_id
        coordinator_id = coordinator.coordinator_id
        if stack.embedded is not None:
            assert generation == 0, "a fresh group's first generation on the embedded broker"

        async def heartbeat_error() -> int:
            response = await scratch.producer.client.send(
                coordinator_id, HeartbeatRequest(group, generation, member_id)
            )
            return int(response.error_code)

        assert await heartbeat_error() == 0, "the member is in the group while it runs"
    finally:
        consumer.stop()
        await asyncio.wait_for(running, timeout=30)
    assert await heartbeat_error() == UnknownMemberIdError.errno
