"""Issue 7, point 9: a webhook receiver that answers 500 for a while, then 200.

A notifier process of its own (own database, own consumer group, backoff of half a second; see
`tests/integration/notifier/process.py`) consumes one `task.cancelled` from Kafka and owes one
delivery to a local receiver, which fails the first attempts and then accepts. Proved:

- backoff: every wait the notifier scheduled lies within the jitter bounds of its own
  `backoff_delay` (computed by calling it at the jitter's edges), no attempt came before its
  scheduled time, and attempts are increasingly spaced;
- exactly one effective delivery: the receiver answered 2xx once, and nothing came after it;
- the same `webhook-id` (the delivery's id), the same signed body on every attempt;
- `GET /v1/webhooks/{id}/deliveries` lists exactly the attempts the receiver saw, in order, with the
  statuses it answered.

Only ordering and bounds derived from recorded timestamps are asserted, never how fast anything
was: the receiver's arrival times, the notifier's `started_at` per attempt (API), and the
`next_attempt_at` it scheduled with its log line's time (the log is written after the commit).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from errands.launcher import ServiceProcesses
from services.notifier.domain.retries import backoff_delay
from shared.events import TaskCancelled, build_event
from shared.kafka import create_producer, start_with_retry
from shared.settings import Settings
from tests.client import until
from tests.integration.notifier.conftest import (
    Receiver,
    new_operator,
    notifier_settings,
    receiver,
    sessionmaker,
)
from tests.integration.notifier.process import log_lines, running_notifier

pytestmark = pytest.mark.e2e

# The notifier's fixtures, shared with its integration tests (a database of its own on the stack).
__all__ = ["notifier_settings", "receiver", "sessionmaker"]

BASE_S = 0.5  # large next to the worker's poll interval, so each wait is the backoff's own
MAX_S = 30.0  # above every wait here: the doubling is never capped
FAILURES = 4  # 500s before the 200: at most 0.5 + 1 + 2 + 4 s of waiting
POLL_S = 0.05


class _JitterEdge(random.Random):
    """A random source that always draws the lowest (or highest) value: the jitter's bounds."""

    def __init__(self, *, high: bool) -> None:
        super().__init__()
        self._high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self._high else a


def jitter_bounds(attempt: int) -> tuple[float, float]:
    """The shortest and longest wait the notifier's own backoff allows after failed attempt `attempt`."""
    return (
        backoff_delay(attempt, base_s=BASE_S, max_s=MAX_S, rng=_JitterEdge(high=False)),
        backoff_delay(attempt, base_s=BASE_S, max_s=MAX_S, rng=_JitterEdge(high=True)),
    )


async def _cancel_a_task(settings: Settings, organisation_id: uuid.UUID) -> str:
    """Publish a `task.cancelled` of the organisation as intake does; returns the event id."""
    task_id = uuid.uuid4()
    topic, event = build_event(
        TaskCancelled(task_id=task_id, organisation_id=organisation_id, reason="retry test"),
        source="/intake",
        subject=task_id,
    )
    producer = create_producer(settings, client_id="webhook-retries-test")
    await start_with_retry(producer, what="test producer")
    try:
        await producer.send_and_wait(topic, value=event.to_bytes(), key=str(task_id).encode())
    finally:
        await producer.stop()
    return str(event.id)


def _scheduled(notifier: ServiceProcesses, delivery_id: str) -> dict[int, tuple[datetime, datetime]]:
    """Per failed attempt: (the `next_attempt_at` it scheduled, when that was logged after the commit)."""
    return {
        line["attempt"]: (
            datetime.fromisoformat(line["next_attempt_at"]),
            datetime.fromisoformat(line["timestamp"]),
        )
        for line in log_lines(notifier)
        if line.get("event") == "webhook.retry_scheduled" and line.get("delivery_id") == delivery_id
    }


@pytest.mark.timeout(180)
async def test_a_receiver_failing_then_recovering_gets_one_delivery_after_backoff_with_one_webhook_id(
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    operator = await new_operator(sessionmaker)
    no_headers: dict[str, str] = {}
    receiver.answers = [(500, no_headers)] * FAILURES + [(200, no_headers)]
    async with (
        running_notifier(
            notifier_settings,
            tmp_path,
            join_group=False,  # a fresh group reads from the earliest offset: nothing is missed
            WEBHOOK_BACKOFF_BASE_S=str(BASE_S),
            WEBHOOK_BACKOFF_MAX_S=str(MAX_S),
            WEBHOOK_MAX_ATTEMPTS=str(FAILURES + 5),
            DELIVERY_POLL_S=str(POLL_S),
        ) as notifier,
        aiohttp.ClientSession() as http,
    ):
        base = notifier.url("notifier")
        async with http.post(
            f"{base}/v1/webhooks",
            json={"url": receiver.url("/hook"), "events": ["task.cancelled"]},
            headers=operator.headers,
        ) as response:
            assert response.status == 201, await response.text()
            webhook = await response.json()
        event_id = await _cancel_a_task(notifier_settings, operator.organisation_id)

        async def settled() -> dict[str, Any] | None:
            async with http.get(
                f"{base}/v1/webhooks/{webhook['id']}/deliveries", headers=operator.headers
            ) as response:
                assert response.status == 200, await response.text()
                items = (await response.json())["items"]
            return items[0] if items and items[0]["status"] != "pending" else None

        # The bound is for a broken run (the consumer joining its group included), not a speed target.
        delivery = await until(settled, what="the delivery settled", timeout_s=150, every_s=0.1)
        seen = len(receiver.requests)
        # Two poll intervals and then some: a stray further attempt would have come by now.
        await asyncio.sleep(1.0)
        scheduled = _scheduled(notifier, delivery["id"])

    requests = [r for r in receiver.requests if r.path == "/hook"]
    attempts = delivery["attempt_log"]

    # Exactly one effective delivery, after the scripted failures, and nothing after it.
    assert len(receiver.requests) == seen, "a request after the delivery succeeded"
    assert delivery["status"] == "succeeded" and delivery["event_id"] == event_id
    assert [r.status for r in requests] == [500] * FAILURES + [200]
    assert sum(200 <= r.status < 300 for r in requests) == 1

    # The same webhook-id throughout: the delivery's id, with the same signed body every time.
    assert {r.headers["webhook-id"] for r in requests} == {delivery["id"]} == {delivery["webhook_id"]}
    assert len({r.body for r in requests}) == 1
    verifier = Webhook(webhook["secret"])
    for request in requests:
        assert verifier.verify(request.body, request.headers)["id"] == event_id
    assert json.loads(requests[0].body)["type"] == "task.cancelled"

    # The API lists exactly the attempts the receiver saw, in order, with what it answered; each
    # attempt started before the receiver saw it and after the previous one was seen.
    assert [a["attempt"] for a in attempts] == list(range(1, FAILURES + 2))
    assert [a["status_code"] for a in attempts] == [r.status for r in requests]
    assert delivery["attempts"] == len(requests)
    started = [datetime.fromisoformat(a["started_at"]) for a in attempts]
    arrived = [r.at for r in requests]
    for n in range(len(requests)):
        assert started[n] <= arrived[n], f"attempt {n + 1} seen before it started"
        if n > 0:
            assert arrived[n - 1] < started[n], f"attempt {n + 1} started before attempt {n} was seen"

    # Backoff. After failed attempt n the notifier waited `wait` = next_attempt_at - (the moment it
    # recorded the failure), and that moment lies between the receiver's answer and the log line.
    assert sorted(scheduled) == list(range(1, FAILURES + 1)), scheduled
    gaps = []
    for n in range(1, FAILURES + 1):
        low, high = jitter_bounds(n)
        next_attempt_at, logged_at = scheduled[n]
        seen_at, next_seen_at = arrived[n - 1], arrived[n]
        longest_wait = next_attempt_at - seen_at
        shortest_wait = next_attempt_at - logged_at
        assert longest_wait >= timedelta(seconds=low), f"attempt {n}: waited less than {low}s"
        assert shortest_wait <= timedelta(seconds=high), f"attempt {n}: waited more than {high}s"
        assert next_seen_at >= next_attempt_at, f"attempt {n + 1} came before it was due"
        gap = (next_seen_at - seen_at).total_seconds()
        assert gap >= low
        gaps.append(gap)
    # Increasingly spaced. Neighbouring waits may meet at the jitter's edge (the most after attempt
    # n is the least after n + 1), so each wait is compared with the one two before, whose bounds
    # are a whole base interval apart or more.
    for n in range(2, len(gaps)):
        assert gaps[n] > gaps[n - 2], f"waits did not grow: {gaps}"
    assert jitter_bounds(FAILURES)[0] > jitter_bounds(1)[1], "the bounds themselves grow"
