"""Event propagation: outbox commit -> consumer receipt, against the broker alone, same size and rate.

One embedded stack (PostgreSQL + Tansu). In a private schema, an outbox table with its NOTIFY
trigger (as the services' migrations create it) and the shared `OutboxRelay` publishing it, woken
by the shared `PgListener`. Two private topics, one partition each, and one plain aiokafka
consumer per topic recording when each record arrives.

- outbox:  each event is written by `shared.outbox.add_events` in a transaction of its own; the
           clock starts when the commit returns. The relay (its production producer: acks=all,
           linger 5 ms) publishes it; the clock stops when the consumer hands it over.
- broker:  a bare aiokafka producer (acks=all, no linger) sends the same payload bytes; the clock
           starts just before `send`, stops at receipt.

Both are open-loop at the same rate, alternating in rounds so drifting machine load hits both;
one measurement per event, matched by key. Both clocks are `perf_counter` in this one process.

Run: `.venv/bin/python -m bench.propagation [--rate R] [--events N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from errands.stack import EmbeddedStack
from shared.db import create_engine, create_sessionmaker, schema_metadata
from shared.events import CloudEvent
from shared.kafka import create_producer
from shared.listen import PgListener
from shared.outbox import OutboxRelay, add_events, outbox_table
from shared.settings import Settings

IN_FLIGHT = 8  # concurrent writer transactions (the engine's pool), as a service's handlers would be


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Receiver:
    """A plain consumer on one partition, from its end: receipt time per record key."""

    def __init__(self, bootstrap: str, topic: str, *, fetch_max_wait_ms: int) -> None:
        self.received: dict[str, float] = {}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms
        )
        self._partition = TopicPartition(topic, 0)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_end(self._partition)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    assert record.key is not None
                    self.received.setdefault(record.key.decode(), now)

    async def wait_for(self, keys: list[str], *, timeout_s: float) -> None:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline and not all(k in self.received for k in keys):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


def _event(padding: str) -> CloudEvent:
    key = str(uuid.uuid4())
    return CloudEvent(source="/bench", type="bench.propagated", subject=key, data={"padding": padding})


async def _paced(
    events: list[CloudEvent], rate: float, send: Callable[[CloudEvent], Awaitable[float]]
) -> tuple[dict[str, float], float]:
    """Open loop: event i is sent at i/rate whether or not earlier ones finished (at most
    `IN_FLIGHT` at once); returns start times by key and the rate achieved."""
    started_at: dict[str, float] = {}
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(event: CloudEvent) -> None:
        try:
            started_at[event.subject] = await send(event)
        finally:
            slots.release()

    begin = time.perf_counter()
    sending = []
    for i, event in enumerate(events):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        sending.append(asyncio.create_task(one(event)))
    await asyncio.gather(*sending)
    elapsed = time.perf_counter() - begin
    return started_at, len(events) / elapsed if elapsed > 0 else float("inf")


async def measure_async(
    *, rate: float, events: int, rounds: int, payload_bytes: int, fetch_max_wait_ms: int
) -> dict[str, Any]:
    stack = EmbeddedStack()
    stack.start()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    topics = {"outbox": f"bench.{schema}.outbox", "broker": f"bench.{schema}.bare"}
    settings = Settings(database_url=stack.database_url, kafka_bootstrap_servers=stack.kafka_bootstrap)
    engine = create_engine(settings, pool_size=IN_FLIGHT + 2)
    try:
        metadata = schema_metadata(schema)
        outbox = outbox_table(metadata)
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
        await admin.create_topics(
            [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics.values()]
        )
        await admin.close()
        sessionmaker = create_sessionmaker(engine)
        relay_producer = create_producer(settings, client_id="bench-relay")
        bare_producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        listener = PgListener(settings.asyncpg_dsn)
        relay = OutboxRelay(
            outbox=outbox, sessionmaker=sessionmaker, producer=relay_producer, listener=listener
        )
        receivers = {
            name: Receiver(stack.kafka_bootstrap, topic, fetch_max_wait_ms=fetch_max_wait_ms)
            for name, topic in topics.items()
        }
        await relay_producer.start()
        await bare_producer.start()
        await listener.start()
        for receiver in receivers.values():
            await receiver.start()
        relaying = asyncio.create_task(relay.run())

        async def via_outbox(event: CloudEvent) -> float:
            async with sessionmaker() as session, session.begin():
                await add_events(session, outbox, [(topics["outbox"], event)])
            return time.perf_counter()

        async def via_broker(event: CloudEvent) -> float:
            started = time.perf_counter()
            await bare_producer.send(topics["broker"], value=event.to_bytes(), key=event.subject.encode())
            return started

        padding = "x" * max(0, payload_bytes - len(_event("").to_bytes()))
        size = len(_event(padding).to_bytes())
        latencies: dict[str, list[float]] = {"outbox": [], "broker": []}
        achieved: dict[str, list[float]] = {"outbox": [], "broker": []}
        lost = {"outbox": 0, "broker": 0}
        try:
            # Warm both paths (connections, metadata) before measuring.
            for name, send in (("broker", via_broker), ("outbox", via_outbox)):
                warm = [_event(padding) for _ in range(20)]
                await _paced(warm, rate, send)
                await receivers[name].wait_for([e.subject for e in warm], timeout_s=30)
            per_round = max(1, events // rounds)
            for _ in range(rounds):
                for name, send in (("broker", via_broker), ("outbox", via_outbox)):
                    batch = [_event(padding) for _ in range(per_round)]
                    started_at, rate_achieved = await _paced(batch, rate, send)
                    await receivers[name].wait_for(list(started_at), timeout_s=30)
                    achieved[name].append(rate_achieved)
                    for key, t0 in started_at.items():
                        if key in receivers[name].received:
                            latencies[name].append(1000 * (receivers[name].received[key] - t0))
                        else:
                            lost[name] += 1
        finally:
            relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying
            for receiver in receivers.values():
                await receiver.stop()
            await listener.stop()
            await bare_producer.stop()
            await relay_producer.stop()
    finally:
        await engine.dispose()
        stack.stop()
    figures: dict[str, Any] = {
        "rate_per_s": rate,
        "payload_bytes": size,
        "events_per_path": {name: len(values) for name, values in latencies.items()},
        "rounds": rounds,
        "consumer_fetch_max_wait_ms": fetch_max_wait_ms,
        "not_received_in_30s": lost,
    }
    for name, values in latencies.items():
        figures[name] = {
            "p50_ms": round(_percentile(values, 0.50), 2),
            "p95_ms": round(_percentile(values, 0.95), 2),
            "p99_ms": round(_percentile(values, 0.99), 2),
            "max_ms": round(max(values), 2),
            "rate_achieved_per_s": round(min(achieved[name]), 1),
        }
    figures["p99_ratio"] = round(figures["outbox"]["p99_ms"] / max(figures["broker"]["p99_ms"], 1e-3), 2)
    figures["p50_ratio"] = round(figures["outbox"]["p50_ms"] / max(figures["broker"]["p50_ms"], 1e-3), 2)
    figures["target_p99_ratio"] = 10.0
    figures["met"] = figures["p99_ratio"] <= 10.0
    return figures


def measure(
    *,
    rate: float = 200.0,
    events: int = 2000,
    rounds: int = 2,
    payload_bytes: int = 1024,
    fetch_max_wait_ms: int = 500,
) -> dict[str, Any]:
    """fetch_max_wait_ms 500 is aiokafka's default, which the services' consumers use."""
    return asyncio.run(
        measure_async(
            rate=rate,
            events=events,
            rounds=rounds,
            payload_bytes=payload_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events per second on each path")
    parser.add_argument("--events", type=int, default=2000, help="events measured on each path")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bytes", type=int, default=1024, help="payload size")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=500, help="the consumers' fetch wait")
    args = parser.parse_args()
    figures = measure(
        rate=args.rate,
        events=args.events,
        rounds=args.rounds,
        payload_bytes=args.bytes,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
