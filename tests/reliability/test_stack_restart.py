"""`make run` keeps its data: the whole stack `kill -9`-ed under load, then started on the same data.

The embedded broker keeps its log in memory, so it comes back empty: no topics, no committed
offsets. What the outboxes retained is published again (`errands.launcher.prepare` with
`broker_is_new`), the consumers' inboxes recognise what they had applied, and everything else goes on.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from tests.client import until
from tests.reliability.invariants import (
    assert_each_task_dispatched_once,
    assert_every_acknowledged_task_exists_once,
    assert_no_double_assignment,
    assert_no_server_errors,
)
from tests.reliability.load import Operators, Volunteers
from tests.reliability.rig import Rig, http_session

pytestmark = pytest.mark.e2e

# As `make run` sets it for its embedded broker (errands.launcher.EMBEDDED_OUTBOX_RETENTION_S).
SERVICE_ENV = {"OUTBOX_RETENTION_S": str(3 * 24 * 3600)}
TASKS = 200
CREW = 30


async def _retained(rig: Rig) -> int:
    counts = [
        await rig.value(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NOT NULL")  # noqa: S608
        for schema in ("intake", "dispatch", "notify")
    ]
    return sum(counts)


async def _unfinished(rig: Rig, operators: Operators) -> bool | str:
    rows = await rig.fetch(
        "SELECT status, count(*) AS n FROM intake.tasks WHERE id = ANY($1::uuid[]) GROUP BY status",
        [uuid.UUID(t) for t in operators.task_ids],
    )
    statuses = {row["status"]: row["n"] for row in rows}
    return statuses == {"completed": TASKS} or f"task statuses {statuses}"


@pytest.mark.timeout(900)
async def test_every_task_finishes_once_after_the_whole_stack_is_killed_and_restarted(rig: Rig) -> None:
    centre = (random.uniform(-40, 40), random.uniform(-170, 170))
    operator = await rig.organisation()
    async with http_session() as http:
        operators = Operators(http, rig.intake_urls, operator, centre, seed=TASKS)
        volunteers = Volunteers(http, rig.dispatcher_urls, operator, operators.codes, centre, seed=TASKS)
        await volunteers.register(CREW)
        volunteers.start()
        submitting = asyncio.create_task(operators.submit_many(TASKS, concurrency=16, per_s=20))
        try:
            while len(operators.acknowledged) < TASKS // 2:
                await asyncio.sleep(0.1)
            # Events went out and were applied before the crash: the broker will lose them.
            assert await _retained(rig) > 0
            rig.kill_everything()
            killed_at = len(operators.acknowledged)
            await asyncio.sleep(1.0)
            started = time.monotonic()
            resent = await rig.start_everything()
            restarted_s = time.monotonic() - started
            assert resent > 0
            await submitting
            await until(
                lambda: _unfinished(rig, operators), what="every task completed", timeout_s=240, every_s=1
            )
        finally:
            submitting.cancel()
            await volunteers.stop()
    assert len(operators.acknowledged) == TASKS
    await assert_every_acknowledged_task_exists_once(rig, operators)
    await assert_each_task_dispatched_once(rig, operators)
    figures = await assert_no_double_assignment(rig, operators, volunteers)
    assert figures["delivered"] == len(operators.leg_ids)
    confirmed = await rig.value(
        "SELECT count(*) FROM notify.legs WHERE task_id = ANY($1::uuid[]) AND confirmed_at IS NOT NULL",
        [uuid.UUID(t) for t in operators.task_ids],
    )
    assert confirmed == len(operators.leg_ids)
    # The resent copies reached the consumers and were recognised, not applied again.
    duplicates = [
        line
        for service in ("intake", "dispatcher", "notifier")
        for line in rig.log_lines(service)
        if line.get("event") == "event.handled" and line.get("outcome") == "duplicate"
    ]
    assert duplicates, "no resent event was recognised as already applied"
    assert await rig.records("errands.deadletter.v1", idle_s=2.0) == [], "nothing dead-lettered"
    assert_no_server_errors(operators.tally, volunteers.tally)
    print(
        f"\n{TASKS} tasks, the whole stack killed after {killed_at} acknowledged; "
        f"back in {restarted_s:.0f} s, {resent} events resent, {len(duplicates)} copies recognised, "
        "every task completed once"
    )
