"""`errands tail`, `errands lag` and `errands dlq` against the session's broker (Tansu or Kafka).

Each test works on topics and consumer groups of its own; dead letters of other tests are told apart
by their origin topic.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import MetaData

from errands import ops
from errands.cli import main
from shared.consumer import EventConsumer, inbox_table
from shared.events import DeadLetterHeader, LegOffered, TaskCancelled, build_event
from shared.kafka import create_producer
from tests.conftest import Stack


@pytest.fixture
async def topic(stack: Stack) -> str:
    name = f"test.ops.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    return name


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = create_producer(stack.settings(), client_id="test-ops")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def _offered(task_id: uuid.UUID) -> bytes:
    _, event = build_event(
        LegOffered(
            task_id=task_id,
            leg_id=uuid.uuid4(),
            offer_id=uuid.uuid4(),
            volunteer_id=uuid.uuid4(),
            expires_at=datetime.now(UTC),
            distance_m=640.0,
        ),
        source="/dispatcher",
        subject=task_id,
    )
    return event.to_bytes()


def _cancelled(task_id: uuid.UUID) -> bytes:
    _, event = build_event(
        TaskCancelled(task_id=task_id, organisation_id=uuid.uuid4(), reason="no longer needed"),
        source="/intake",
        subject=task_id,
    )
    return event.to_bytes()


async def test_tail_from_the_beginning_prints_one_line_per_matching_event(
    stack: Stack, topic: str, producer: AIOKafkaProducer
) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    for key, value in (
        (mine, _cancelled(mine)),
        (mine, _offered(mine)),
        (other, _offered(other)),
        (mine, b"{not json"),
    ):
        await producer.send_and_wait(topic, value=value, key=str(key).encode())

    everything = io.StringIO()
    printed = await ops.tail(
        bootstrap=stack.kafka_bootstrap, topics=[topic], from_beginning=True, out=everything, idle_exit_s=1.5
    )
    lines = everything.getvalue().splitlines()
    assert printed == len(lines) == 4
    assert sum("leg.offered" in line and "distance=640m" in line for line in lines) == 2
    assert any("task.cancelled" in line and "reason=no longer needed" in line for line in lines)
    assert any("! not a CloudEvent" in line and "{not json" in line for line in lines)

    narrowed = io.StringIO()
    await ops.tail(
        bootstrap=stack.kafka_bootstrap,
        topics=[topic],
        types=["leg.*"],
        task=str(mine)[:8],
        from_beginning=True,
        as_json=True,
        out=narrowed,
        max_events=5,
        idle_exit_s=1.5,
    )
    events = [json.loads(line) for line in narrowed.getvalue().splitlines()]
    assert [(e["type"], e["subject"]) for e in events] == [("leg.offered", str(mine))]


async def test_tail_command_starts_at_the_end_and_stops_cleanly_on_ctrl_c(
    stack: Stack, topic: str, producer: AIOKafkaProducer
) -> None:
    before, after = uuid.uuid4(), uuid.uuid4()
    await producer.send_and_wait(topic, value=_offered(before), key=str(before).encode())
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "errands",
        "tail",
        topic,
        "--full-ids",
        "--bootstrap",
        stack.kafka_bootstrap,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "NO_COLOR": "1"},
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        ready = await asyncio.wait_for(process.stderr.readline(), timeout=30)
        assert b"from the end" in ready, ready
        await producer.send_and_wait(topic, value=_offered(after), key=str(after).encode())
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        process.send_signal(signal.SIGINT)
        rest, errors = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert f"task={after}" in line and "leg.offered" in line and "\033[" not in line
    assert str(before) not in line + rest.decode(), "a record from before the start was printed"
    assert process.returncode == 0, errors.decode()
    assert b"Traceback" not in errors


async def test_lag_shows_committed_end_and_lag_per_partition_with_a_total(
    stack: Stack, topic: str, producer: AIOKafkaProducer, capsys: pytest.CaptureFixture[str]
) -> None:
    # One record per request, so each is its own batch and even Tansu reports the true end.
    for i in range(5):
        await producer.send_and_wait(topic, value=b"p0-%d" % i, partition=0)
    for i in range(2):
        await producer.send_and_wait(topic, value=b"p1-%d" % i, partition=1)
    group = f"test-ops-{uuid.uuid4().hex[:8]}"
    reader = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await reader.commit({TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 2})
    finally:
        await reader.stop()

    rows = await ops.consumer_lag(bootstrap=stack.kafka_bootstrap, groups=[group])
    assert [(r.topic, r.partition, r.committed, r.end, r.lag) for r in rows] == [
        (topic, 0, 3, 5, 2),
        (topic, 1, 2, 2, 0),
    ]

    exit_code = await asyncio.to_thread(main, ["lag", "--bootstrap", stack.kafka_bootstrap, "--json"])
    assert exit_code == 0
    report = {entry["group"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert group in report, "groups are listed from the broker"
    assert report[group]["total_lag"] == 2


async def _dead_letters_of(stack: Stack, topic: str, *, want: int) -> list[ops.DeadLetter]:
    for _ in range(100):
        letters = [
            d for d in await ops.list_dead_letters(bootstrap=stack.kafka_bootstrap) if d.origin_topic == topic
        ]
        if len(letters) >= want:
            return letters
        await asyncio.sleep(0.3)
    raise AssertionError(f"{want} dead letters from {topic} never showed up")


async def test_dlq_lists_dead_letters_and_replays_each_once_with_the_same_bytes(
    stack: Stack, topic: str, producer: AIOKafkaProducer, capsys: pytest.CaptureFixture[str]
) -> None:
    poison = {b"task-a": b"{not json", b"task-b": b"\xff\xfe not even text"}
    for key, value in poison.items():
        await producer.send_and_wait(topic, value=value, key=key)
    group = f"test-ops-{uuid.uuid4().hex[:8]}"
    # The shared consumer loop's own record handling writes the dead letters (malformed records never
    # reach the database). It is fed directly: joining a group on Tansu takes about 15 s.
    consumer = EventConsumer(
        settings=stack.settings(),
        group_id=group,
        topics=(topic,),
        handlers={},
        sessionmaker=cast(Any, None),
        inbox=inbox_table(MetaData()),
        producer=producer,
    )
    for record in await ops.read_topic_to_end(stack.kafka_bootstrap, topic):
        await consumer._handle_record(record)
    letters = await _dead_letters_of(stack, topic, want=2)
    assert len(letters) == 2
    assert {letter.key for letter in letters} == set(poison)
    assert all(letter.group == group and letter.attempts == 1 for letter in letters)
    assert all((letter.error or "").startswith("malformed CloudEvent") for letter in letters)
    assert all(letter.value == poison[letter.key or b""] for letter in letters)
    assert {(letter.origin_partition, letter.origin_offset) for letter in letters} <= {
        (p, o) for p in (0, 1) for o in (0, 1)
    }

    capsys.readouterr()  # the consumer loop's own log lines
    exit_code = await asyncio.to_thread(
        main, ["dlq", "list", "--bootstrap", stack.kafka_bootstrap, "--group", group, "--json"]
    )
    assert exit_code == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(entry["id"] for entry in listed) == sorted(letter.id for letter in letters)
    assert {entry["origin_topic"] for entry in listed} == {topic}

    first = letters[0]
    exit_code = await asyncio.to_thread(
        main, ["dlq", "replay", first.id, "--bootstrap", stack.kafka_bootstrap]
    )
    assert exit_code == 0
    assert "replayed ->" in capsys.readouterr().out

    again = await ops.replay_dead_letters(bootstrap=stack.kafka_bootstrap, ids=[first.id])
    assert again[0].replayed_to is None and (again[0].skipped or "").startswith("already replayed")
    rest = await ops.replay_dead_letters(bootstrap=stack.kafka_bootstrap, everything=True, group=group)
    assert [(o.id, o.replayed_to is not None) for o in rest] == [
        (first.id, False),
        (letters[1].id, True),
    ]
    unknown = await ops.replay_dead_letters(bootstrap=stack.kafka_bootstrap, ids=["0:999999999"])
    assert unknown[0].skipped == "no such dead letter"

    replayed = [
        r
        for r in await ops.read_topic_to_end(stack.kafka_bootstrap, topic)
        if r.header(DeadLetterHeader.REPLAYED_FROM)
    ]
    assert sorted((r.header(DeadLetterHeader.REPLAYED_FROM), r.key, r.value) for r in replayed) == sorted(
        (letter.id, letter.key, letter.value) for letter in letters
    ), "each dead letter came back once, with its original key and bytes"
    for letter in letters:
        origin = next(r for r in replayed if r.header(DeadLetterHeader.REPLAYED_FROM) == letter.id)
        assert origin.partition == letter.origin_partition, "same key, same partition, same order"
