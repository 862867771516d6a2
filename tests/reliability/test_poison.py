"""Poison records on every consumed topic are dead-lettered with their origin, and their partition flows on.

Against the running services: a poison record is produced with the same key as a real task (or
volunteer), so it lands on the partition that key's own events use; then the services are made to
publish a good event on that key. The good event must be applied by every consumer group reading
that topic (its id is in the group's inbox), and the poison must be in `errands.deadletter.v1` with
headers naming the topic, that partition, an earlier offset and the group.
"""

from __future__ import annotations

import functools
import random
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from errands import admin
from errands.launcher import ServiceProcesses
from shared.events import (
    CONFIRMATIONS_TOPIC,
    DEADLETTER_TOPIC,
    DISPATCH_TOPIC,
    TASKS_TOPIC,
    VOLUNTEERS_TOPIC,
    CloudEvent,
)
from tests.client import bearer, until
from tests.conftest import Stack
from tests.reliability.public_api import first_offer, go_on_duty, new_organisation, new_volunteer, submit_task

pytestmark = pytest.mark.e2e

# Which consumer group reads which topic (see each service's bootstrap.py), and the schema of its inbox.
CONSUMERS: dict[str, tuple[tuple[str, str], ...]] = {
    TASKS_TOPIC: (("dispatcher", "dispatch"), ("notifier", "notify")),
    DISPATCH_TOPIC: (("intake-read-model", "intake"), ("notifier", "notify")),
    CONFIRMATIONS_TOPIC: (("intake-read-model", "intake"), ("dispatcher", "dispatch")),
    VOLUNTEERS_TOPIC: (("intake-volunteers", "intake"),),
}

MALFORMED = b"\x00{not a CloudEvent"


def _unknown(topic: str, key: str) -> CloudEvent:
    """A well-formed event of a type the topic's consumers handle, about a task or leg nobody knows.

    Where a handler tolerates an unknown task by design (an event may overtake the one that
    introduces its task across topics), its data also fails validation, which no handler tolerates.
    """
    stranger = uuid.uuid4()
    if topic == TASKS_TOPIC:
        return CloudEvent(
            source="/poison", type="task.cancelled", subject=str(stranger), data={"task_id": "not-a-task"}
        )
    if topic == DISPATCH_TOPIC:
        return CloudEvent(
            source="/poison",
            type="leg.assigned",
            subject=str(stranger),
            data={"task_id": str(stranger), "leg_id": str(uuid.uuid4()), "volunteer_id": "nobody"},
        )
    if topic == CONFIRMATIONS_TOPIC:
        return CloudEvent(
            source="/poison",
            type="leg.confirmed",
            subject=str(stranger),
            data={
                "task_id": str(stranger),
                "leg_id": str(uuid.uuid4()),
                "volunteer_id": str(uuid.uuid4()),
                "method": "code",
            },
        )
    return CloudEvent(
        source="/poison",
        type="volunteer.location_reported",
        subject=key,
        data={"volunteer_id": key, "lat": "north", "lon": 0},
    )


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]


async def read_all(bootstrap: str, topics: list[str], keys: set[bytes]) -> list[Record]:
    """Every record with one of `keys` on `topics`, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[Record] = []
    try:
        await consumer.topics()  # fetches metadata for every topic
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    if r.key in keys:
                        headers = {k: v.decode() for k, v in r.headers}
                        found.append(Record(r.topic, r.partition, r.offset, r.key, r.value, headers))
    finally:
        await consumer.stop()
    return found


async def test_poison_records_are_deadlettered_and_their_partitions_keep_flowing(
    stack: Stack, system: ServiceProcesses
) -> None:
    demo = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    lat, lon = -33.0 - random.uniform(0, 1), -60.0 - random.uniform(0, 1)
    async with aiohttp.ClientSession() as http:
        organisation = await new_organisation(http, intake, admin_token=demo["admin_token"], name="Poison")
        operator = bearer(organisation["operator_token"])
        created = await new_volunteer(
            http,
            dispatcher,
            operator=operator,
            body={"name": "Xu Ping", "phone": "+8613800004444", "vehicle": "car", "insured": True},
        )
        volunteer_id, me = created["id"], bearer(created["token"])
        await go_on_duty(http, dispatcher, me=me)

        async def submit(at: tuple[float, float]) -> dict[str, Any]:
            body = {
                "kind": "errand",
                "pickup": {"lat": at[0], "lon": at[1], "address": "Depot"},
                "dropoffs": [{"lat": at[0] + 0.003, "lon": at[1], "address": "Door"}],
            }
            return await submit_task(http, intake, operator=operator, body=body)

        task = await submit((lat, lon))  # its dispatch and confirmation events carry the good news
        waiting = await submit((-80.0, 0.0))  # far from everyone: it is cancelled to carry tasks.v1's
        keys = {TASKS_TOPIC: waiting["id"], DISPATCH_TOPIC: task["id"], CONFIRMATIONS_TOPIC: task["id"]}
        keys[VOLUNTEERS_TOPIC] = volunteer_id
        poisons: dict[str, list[bytes]] = {}
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for topic, key in keys.items():
                poisons[topic] = [MALFORMED + topic.encode(), _unknown(topic, key).to_bytes()]
                for value in poisons[topic]:
                    await producer.send_and_wait(topic, value=value, key=key.encode())
        finally:
            await producer.stop()

        # Now the good events, on the same keys: each comes after its topic's poison.
        async with http.post(
            f"{dispatcher}/v1/me/location", json={"lat": lat, "lon": lon, "accuracy_m": 5}, headers=me
        ) as response:
            assert response.status == 202  # volunteer.location_reported

        live = await first_offer(http, dispatcher, me=me, timeout_s=45, every_s=0.3)
        leg_id = live["leg"]["id"]
        async with http.post(f"{dispatcher}/v1/me/offers/{live['id']}/accept", headers=me) as response:
            assert response.status == 200, await response.text()  # leg.assigned
        async with http.post(f"{dispatcher}/v1/me/legs/{leg_id}/picked-up", headers=me) as response:
            assert response.status == 200
        code = task["legs"][0]["confirmation_code"]
        async with http.post(
            f"{dispatcher}/v1/me/legs/{leg_id}/delivered", json={"confirmation_code": code}, headers=me
        ) as response:
            assert response.status == 202  # the notifier answers with leg.confirmed
        async with http.post(f"{intake}/v1/tasks/{waiting['id']}/cancel", headers=operator) as response:
            assert response.status == 200  # task.cancelled

        async def completed() -> bool:
            async with http.get(f"{intake}/v1/tasks/{task['id']}", headers=operator) as response:
                return bool((await response.json())["status"] == "completed")

        await until(completed, what="the task completed", timeout_s=45, every_s=0.3)

    good_types = {
        TASKS_TOPIC: "task.cancelled",
        DISPATCH_TOPIC: "leg.assigned",
        CONFIRMATIONS_TOPIC: "leg.confirmed",
        VOLUNTEERS_TOPIC: "volunteer.location_reported",
    }
    encoded_keys = {k.encode() for k in keys.values()}
    connection = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        for topic, groups in CONSUMERS.items():
            records = [r for r in await read_all(stack.kafka_bootstrap, [topic], encoded_keys)]
            records = [r for r in records if r.key == keys[topic].encode()]
            poisoned = [r for r in records if r.value in poisons[topic]]
            assert len(poisoned) == 2, f"{topic}: both poison records are on the topic"
            partition = poisoned[0].partition
            last_poison = max(r.offset for r in poisoned)
            good = [
                r
                for r in records
                if r.value not in poisons[topic]
                and CloudEvent.from_bytes(r.value).type == good_types[topic]
                and r.offset > last_poison
            ]
            assert good, f"{topic}: a good event follows the poison on partition {partition}"
            assert {r.partition for r in good} == {partition}, "same key, same partition"
            good_id = CloudEvent.from_bytes(good[0].value).id

            async def applied(group: str, schema: str, event_id: uuid.UUID = good_id) -> bool:
                found = await connection.fetchval(
                    f"SELECT count(*) FROM {schema}.inbox WHERE consumer = $1 AND event_id = $2",  # noqa: S608
                    group,
                    event_id,
                )
                return bool(found)

            for group, schema in groups:
                # Applied after the poison on one partition: the poison was dead-lettered first.
                assert await until(
                    functools.partial(applied, group, schema),
                    what=f"{group} applied {topic}",
                    timeout_s=45,
                    every_s=0.3,
                ), f"{group} applied {topic}"
            letters = await read_all(stack.kafka_bootstrap, [DEADLETTER_TOPIC], {keys[topic].encode()})
            for group, _ in groups:
                for origin in poisoned:
                    mine = [
                        r
                        for r in letters
                        if r.value == origin.value
                        and r.headers.get("errands-consumer-group") == group
                        and r.headers.get("errands-origin-topic") == topic
                    ]
                    assert len(mine) == 1, f"{group} dead-lettered {origin.value[:40]!r} from {topic} once"
                    headers = mine[0].headers
                    assert headers["errands-origin-partition"] == str(partition)
                    assert headers["errands-origin-offset"] == str(origin.offset)
                    assert int(headers["errands-attempts"]) >= 1
                    assert headers["errands-error"], "the error is named"
                    assert "errands-event-type" in headers
    finally:
        await connection.close()
