"""Where the broker is and how the ops commands read it: without a group, so no service's position moves."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from errands.local import local_state
from shared.events import CloudEvent
from shared.settings import Settings


class OpsError(Exception):
    """A failure worth one line to the operator rather than a traceback."""


# --- where the broker is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    servers: str
    source: str  # where the address came from, for error messages


def resolve_bootstrap(
    flag: str | None, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Bootstrap:
    """--bootstrap, else KAFKA_BOOTSTRAP_SERVERS, else `make run`'s .errands/local.json, else the default."""
    if flag:
        return Bootstrap(flag, "--bootstrap")
    environ = os.environ if environ is None else environ
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return Bootstrap(environ["KAFKA_BOOTSTRAP_SERVERS"], "KAFKA_BOOTSTRAP_SERVERS")
    found = local_state(environ=environ, cwd=cwd)
    if found is not None:
        servers = found[0].get("kafka_bootstrap")
        if isinstance(servers, str) and servers:
            return Bootstrap(servers, str(found[1]))
    return Bootstrap(Settings.model_fields["kafka_bootstrap_servers"].default, "the default")


# --- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaRecord:
    """A consumed record, apart from the client library that fetched it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @classmethod
    def of(cls, record: Any) -> KafkaRecord:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((name, bytes(value or b"")) for name, value in record.headers or ()),
            timestamp_ms=record.timestamp,
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


def parse_event(value: bytes | None) -> CloudEvent | None:
    """The CloudEvent in a record value, or None when the value is not one."""
    if value is None:
        return None
    try:
        return CloudEvent.from_bytes(value)
    except (ValidationError, ValueError, TypeError):
        return None


def text_or_base64(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def consumer_without_group(bootstrap: str) -> AIOKafkaConsumer:
    # No group: no membership, no committed state, nothing a service's group could notice.
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id="errands-ops",
        request_timeout_ms=15_000,
    )


async def existing_partitions(
    consumer: AIOKafkaConsumer, topics: Iterable[str]
) -> tuple[list[TopicPartition], list[str]]:
    """The partitions of the topics that exist, and the names of those that do not."""
    existing = await consumer.topics()
    partitions: list[TopicPartition] = []
    missing: list[str] = []
    for topic in topics:
        numbers = consumer.partitions_for_topic(topic) if topic in existing else None
        if not numbers:
            missing.append(topic)
            continue
        partitions.extend(TopicPartition(topic, number) for number in sorted(numbers))
    return partitions, missing


async def read_topic_to_end(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[KafkaRecord]:
    """Every record of a topic from its beginning to the end it had when the call started."""
    consumer = consumer_without_group(bootstrap)
    try:
        await consumer.start()
        partitions, _ = await existing_partitions(consumer, [topic])
        if not partitions:
            return []
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        records: list[KafkaRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while remaining:
            if loop.time() > deadline:
                raise OpsError(f"{topic}: could not read to the end within {timeout_s:.0f}s")
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for batch in batches.values():
                records.extend(KafkaRecord.of(r) for r in batch)
            for tp in list(remaining):
                # A fetch returns whole batches, so on Tansu (whose end is the last batch's base offset
                # + 1) the records after that end arrive with it and are kept too.
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


def utc_text(value: datetime | None) -> str:
    """A time as the commands print it: UTC to the millisecond, or dashes of the same width."""
    if value is None:
        return "-" * 24
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def one_line(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
