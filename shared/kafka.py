"""The one producer factory, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.events import ALL_TOPICS
from shared.settings import Settings

log = structlog.get_logger(__name__)


def create_producer(settings: Settings, *, client_id: str) -> AIOKafkaProducer:
    """acks=all and no idempotent producer: de-duplication comes from the inbox, not the broker."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=15_000,
        max_batch_size=1_048_576,
    )


async def start_with_retry(client: AIOKafkaProducer, *, what: str, attempts: int = 60) -> None:
    """Start a Kafka client, waiting for the broker for up to about a minute."""
    for attempt in range(1, attempts + 1):
        try:
            await client.start()
            return
        except KafkaError as exc:
            if attempt == attempts:
                raise
            log.warning("kafka.start_failed", client=what, error=str(exc), attempt=attempt)
            await asyncio.sleep(1.0)


async def create_topics(settings: Settings, topics: tuple[str, ...] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="errands-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            # Another process may create them between our look and our request.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            name=name,
                            num_partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_replication_factor,
                            topic_configs={"retention.ms": str(settings.kafka_topic_retention_ms)},
                        )
                        for name in missing
                    ]
                )
        return missing
    finally:
        await admin.close()
