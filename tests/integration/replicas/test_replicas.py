"""Two dispatchers and two notifiers share the work; `kill -9` one of each and the survivors finish it.

The proof is what a user and an auditor would see: every task completed through the public API, one
`leg.confirmed` per leg and one `task.completed` per task on the confirmations topic, no leg accepted
twice, and both processes of each service in the logs handling events before the kill, the survivor
handling the dead one's partitions after it.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from errands import admin
from services.dispatcher.adapters.tables import LegRow, OfferRow
from shared.db import create_engine, create_sessionmaker
from shared.events import CONFIRMATIONS_TOPIC, DISPATCH_TOPIC, TASKS_TOPIC, CloudEvent
from tests.client import until
from tests.integration.dispatcher.api_client import Client
from tests.integration.replicas.conftest import Replicas

pytestmark = pytest.mark.e2e

NINGBO = (29.87, 121.55)
# Which topic each consumed event type came from, to place a logged partition on its topic.
TOPIC_OF = {
    "task.submitted": TASKS_TOPIC,
    "task.cancelled": TASKS_TOPIC,
    "leg.confirmed": CONFIRMATIONS_TOPIC,
    "leg.confirmation_failed": CONFIRMATIONS_TOPIC,
    "task.completed": CONFIRMATIONS_TOPIC,
}
# Bounds for a broken run, not speed targets: the group only notices a SIGKILLed member once its
# 30 s session times out.
SETTLE_S = 60.0
FINISH_S = 150.0


def handled(replicas: Replicas, replica: str, service: str, *, after: float = 0.0) -> set[tuple[str, int]]:
    """(topic, partition) of each event a process applied, logged at or after a wall-clock time."""
    found = set()
    for line in replicas.log(replica, service):
        if line.get("event") != "event.handled" or line.get("outcome") != "applied":
            continue
        if _epoch(line["timestamp"]) < after:
            continue
        topic = TOPIC_OF.get(line["event_type"], DISPATCH_TOPIC)
        found.add((topic, int(line["partition"])))
    return found


def assigned(replicas: Replicas, replica: str, service: str) -> int:
    """Partitions the process holds after its latest rebalance (0 before its first)."""
    counts = [
        line["partitions"] for line in replicas.log(replica, service) if line["event"] == "consumer.assigned"
    ]
    return int(counts[-1]) if counts else 0


def _shared_by_both(replicas: Replicas, service: str) -> bool:
    a, b = assigned(replicas, "a", service), assigned(replicas, "b", service)
    return a > 0 and b > 0 and a + b == 12


def _all_held_by_a(replicas: Replicas, service: str) -> bool:
    return assigned(replicas, "a", service) == 12


def assigned_at(replicas: Replicas, replica: str, service: str) -> float:
    """Wall-clock time of the process's latest rebalance."""
    stamps = [
        line["timestamp"] for line in replicas.log(replica, service) if line["event"] == "consumer.assigned"
    ]
    return _epoch(stamps[-1])


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class Volunteers:
    """Volunteers' apps working every offer to a confirmed delivery, on whichever dispatcher is alive."""

    def __init__(self, client: Client, tokens: list[str], bases: list[str]) -> None:
        self.client = client
        self.tokens = tokens
        self.bases = bases
        self.codes: dict[str, str] = {}
        self.stop = asyncio.Event()
        self._runs: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._runs = [asyncio.create_task(self._app(token, i)) for i, token in enumerate(self.tokens)]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self._runs)

    async def _app(self, token: str, seed: int) -> None:
        rng = random.Random(seed)
        etag: str | None = None
        while not self.stop.is_set():
            base = rng.choice(self.bases)
            try:
                _, body, etag = await self.client.poll(token, etag=etag, wait=2, base=base)
                for offer in body.get("offers", []):
                    await self.client.call("POST", f"{base}/v1/me/offers/{offer['id']}/accept", token)
                for leg in body.get("legs", []):
                    if leg["status"] == "assigned":
                        await self.client.call("POST", f"{base}/v1/me/legs/{leg['id']}/picked-up", token)
                    elif leg["status"] == "picked_up":
                        await self.client.call(
                            "POST",
                            f"{base}/v1/me/legs/{leg['id']}/delivered",
                            token,
                            json={"confirmation_code": self.codes[leg["id"]]},
                        )
            except (aiohttp.ClientError, TimeoutError):
                # The process behind `base` was just killed: the app retries on a live one.
                etag = None
                await asyncio.sleep(0.2)


async def submit(client: Client, operator: str, rng: random.Random, codes: dict[str, str]) -> dict[str, Any]:
    place = (NINGBO[0] + rng.uniform(-0.01, 0.01), NINGBO[1] + rng.uniform(-0.01, 0.01))
    task = await client.task(operator, place, dropoffs=rng.choice([1, 1, 2]))
    codes.update({leg["id"]: leg["confirmation_code"] for leg in task["legs"]})
    return task


async def statuses(client: Client, operator: str, task_ids: list[str]) -> Counter[str]:
    seen: Counter[str] = Counter()
    for task_id in task_ids:
        status, body = await client.call("GET", f"{client.intake}/v1/tasks/{task_id}", operator)
        seen[body["status"] if status == 200 else f"http {status}"] += 1
    return seen


async def confirmations(bootstrap: str) -> list[CloudEvent]:
    """Every event on the confirmations topic, read from the start without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(CONFIRMATIONS_TOPIC, p)
            for p in consumer.partitions_for_topic(CONFIRMATIONS_TOPIC) or ()
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        events: list[CloudEvent] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            events.extend(CloudEvent.from_bytes(r.value) for records in batches.values() for r in records)
        return events
    finally:
        await consumer.stop()


async def test_killed_replicas_partitions_move_to_the_survivors_and_every_task_completes_once(
    replicas: Replicas,
) -> None:
    started = time.monotonic()
    # Both members of each group hold partitions before any work is sent.
    for service in ("dispatcher", "notifier"):
        await until(
            functools.partial(_shared_by_both, replicas, service),
            what=f"both {service} processes share the 12 partitions",
            timeout_s=SETTLE_S,
            every_s=0.25,
        )
    tokens = await admin.bootstrap_demo(replicas.stack.settings())
    rng = random.Random(9)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        client = Client(http, replicas.a, tokens["admin_token"])
        operator = await client.organisation()
        volunteer_tokens = []
        for _ in range(8):
            place = (NINGBO[0] + rng.uniform(-0.01, 0.01), NINGBO[1] + rng.uniform(-0.01, 0.01))
            _, token = await client.volunteer(operator, place, max_active_legs=3, capacity_kg=30)
            volunteer_tokens.append(token)
        bases = [replicas.a.url("dispatcher"), replicas.b.url("dispatcher")]
        apps = Volunteers(client, volunteer_tokens, bases)
        apps.start()
        try:
            # Phase 1: both replicas of each service at work.
            first = [await submit(client, operator, rng, apps.codes) for _ in range(12)]
            task_ids = [task["id"] for task in first]

            async def all_completed() -> bool:
                return (await statuses(client, operator, task_ids))["completed"] == len(task_ids)

            await until(all_completed, what="the first tasks complete", timeout_s=FINISH_S, every_s=0.5)
            shared = {
                (replica, service): handled(replicas, replica, service)
                for replica in ("a", "b")
                for service in ("dispatcher", "notifier")
            }
            assert all(shared.values()), {key: sorted(value) for key, value in shared.items()}

            # Phase 2: work in flight, then SIGKILL replica b's dispatcher and notifier.
            second = [await submit(client, operator, rng, apps.codes) for _ in range(6)]
            killed_at = time.time()
            kill_started = time.monotonic()
            assert replicas.b.stop("dispatcher", sig=signal.SIGKILL) == -signal.SIGKILL
            assert replicas.b.stop("notifier", sig=signal.SIGKILL) == -signal.SIGKILL
            bases.remove(replicas.b.url("dispatcher"))
            second += [await submit(client, operator, rng, apps.codes) for _ in range(6)]
            task_ids += [task["id"] for task in second]
            for service in ("dispatcher", "notifier"):
                await until(
                    functools.partial(_all_held_by_a, replicas, service),
                    what=f"the surviving {service} holds all 12 partitions",
                    timeout_s=FINISH_S,
                    every_s=0.25,
                )
            taken_over = {s: assigned_at(replicas, "a", s) - killed_at for s in ("dispatcher", "notifier")}
            await until(
                all_completed, what="every task completes after the kill", timeout_s=FINISH_S, every_s=0.5
            )
            finished_s = time.monotonic() - kill_started
        finally:
            await apps.finish()
        final = await statuses(client, operator, task_ids)

    assert final == Counter({"completed": len(task_ids)}), final
    # The survivors applied events on partitions the killed processes had been handling.
    for service in ("dispatcher", "notifier"):
        inherited = shared[("b", service)] & handled(replicas, "a", service, after=killed_at)
        assert inherited, f"{service}: the survivor handled none of the dead process's partitions"

    # Nothing done twice: one confirmation per leg, one completion per task, one accepted offer per leg.
    leg_ids = set(apps.codes)
    events = await confirmations(replicas.stack.kafka_bootstrap)
    confirmed = Counter(
        e.data["leg_id"] for e in events if e.type == "leg.confirmed" and e.data["leg_id"] in leg_ids
    )
    completed = Counter(
        str(e.subject) for e in events if e.type == "task.completed" and str(e.subject) in task_ids
    )
    assert confirmed == Counter(dict.fromkeys(leg_ids, 1))
    assert completed == Counter(dict.fromkeys(task_ids, 1))
    engine = create_engine(replicas.stack.settings(), pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            uuids = [uuid.UUID(leg_id) for leg_id in leg_ids]
            accepted = Counter(
                (
                    await session.execute(
                        select(OfferRow.leg_id).where(
                            OfferRow.leg_id.in_(uuids), OfferRow.status == "accepted"
                        )
                    )
                ).scalars()
            )
            legs_confirmed = await session.scalar(
                select(func.count()).where(LegRow.id.in_(uuids), LegRow.status == "confirmed")
            )
    finally:
        await engine.dispose()
    assert max(accepted.values()) == 1 and legs_confirmed == len(leg_ids)
    print(
        f"\n{len(task_ids)} tasks, {len(leg_ids)} legs; takeover after SIGKILL: dispatcher "
        f"{taken_over['dispatcher']:.1f} s, notifier {taken_over['notifier']:.1f} s; all complete "
        f"{finished_s:.1f} s after the kill; whole test {time.monotonic() - started:.1f} s"
    )
