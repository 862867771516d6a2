"""The topics Errands creates forget events in time: they hold personal data, sealed and masked."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.events import ALL_TOPICS
from tests.conftest import Stack


async def test_every_topic_keeps_events_no_longer_than_the_configured_retention(stack: Stack) -> None:
    settings = stack.settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in ALL_TOPICS]
        )
    finally:
        await admin.close()
    retention = {
        name: dict((entry[0], entry[1]) for entry in entries)
        for answer in answers
        for _, _, _, name, entries in answer.resources
    }
    assert retention.keys() == set(ALL_TOPICS)
    assert {name: config.get("retention.ms") for name, config in retention.items()} == dict.fromkeys(
        ALL_TOPICS, str(settings.kafka_topic_retention_ms)
    )
    assert settings.kafka_topic_retention_ms / 1000 <= settings.personal_data_retention_s
