"""A handler slower than the consumer's heartbeat and poll interval causes no rebalance and no repeat.

The consumer loop runs a handler in the same task that polls; aiokafka heartbeats in the background,
so a handler that sleeps several heartbeat intervals (3 s each) must keep the partition, apply each
event once, and commit.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import Column, MetaData, Table, Text, func, insert, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from shared import consumer as consumer_module
from shared.consumer import EventConsumer, inbox_table
from shared.db import create_engine, create_sessionmaker, schema_metadata
from shared.events import CloudEvent
from shared.kafka import create_producer
from tests.conftest import Stack

SLOW_S = 7.0  # more than two heartbeat intervals and far longer than a poll's 0.5 s


class CountingListener(consumer_module._CommitOnRevoke):
    """The consumer's own rebalance listener, counting what the group coordinator does to us."""

    assigned: list[list[TopicPartition]] = []
    revoked: list[list[TopicPartition]] = []

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        CountingListener.assigned.append(list(assigned))
        await super().on_partitions_assigned(assigned)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            CountingListener.revoked.append(list(revoked))
        await super().on_partitions_revoked(revoked)


@pytest.fixture
def private_schema() -> tuple[str, MetaData]:
    schema = f"slow_{uuid.uuid4().hex[:8]}"
    return schema, schema_metadata(schema)


async def test_a_slow_handler_keeps_its_partition_and_applies_each_event_once(
    stack: Stack, private_schema: tuple[str, MetaData], monkeypatch: pytest.MonkeyPatch
) -> None:
    schema, metadata = private_schema
    topic = f"test.{schema}"
    settings = stack.settings()
    inbox = inbox_table(metadata)
    effects = Table("effects", metadata, Column("event_id", UUID(as_uuid=True)), Column("note", Text))
    engine = create_engine(settings, pool_size=3)
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE SCHEMA {schema}"))
        await connection.run_sync(metadata.create_all)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    await admin.close()
    producer = create_producer(settings, client_id="slow-test")
    await producer.start()
    monkeypatch.setattr(consumer_module, "_CommitOnRevoke", CountingListener)
    CountingListener.assigned.clear()
    CountingListener.revoked.clear()

    async def slow(session: AsyncSession, event: CloudEvent) -> None:
        await asyncio.sleep(SLOW_S)
        await session.execute(insert(effects).values(event_id=event.id, note="slow"))

    loop = EventConsumer(
        settings=settings,
        group_id=f"slow-{schema}",
        topics=(topic,),
        handlers={"test.slow": slow},
        sessionmaker=create_sessionmaker(engine),
        inbox=inbox,
        producer=producer,
    )
    events = [CloudEvent(source="/test", type="test.slow", subject="s", data={"n": n}) for n in range(3)]
    running = asyncio.create_task(loop.run())
    try:
        for event in events:
            await producer.send_and_wait(topic, value=event.to_bytes(), key=b"s")

        async def effects_count() -> int:
            async with engine.connect() as connection:
                return int(await connection.scalar(select(func.count()).select_from(effects)) or 0)

        for _ in range(int((len(events) * SLOW_S + 15) / 0.5)):
            if await effects_count() == len(events):
                break
            await asyncio.sleep(0.5)
        # A little longer: a rebalance or a redelivery would show now as a second effect.
        await asyncio.sleep(2.0)
        async with engine.connect() as connection:
            rows = (await connection.execute(select(effects.c.event_id))).scalars().all()
        assert sorted(rows) == sorted(e.id for e in events), "each event applied exactly once"
        assert len(CountingListener.assigned) == 1, (
            f"one assignment, no rebalance loop: {CountingListener.assigned}"
        )
        assert CountingListener.revoked == [], "nothing was revoked while the handler slept"
    finally:
        loop.stop()
        await asyncio.wait_for(running, timeout=30)
        await producer.stop()
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await engine.dispose()
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
