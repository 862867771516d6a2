"""Issue 7, point 2: intake crashes inside the two windows of the transactional outbox.

(a) after the task's transaction committed and before the relay published it;
(b) after the relay published a batch and before it deleted the rows.

Both windows are opened deterministically from outside, with PostgreSQL's own locks and no hook in
the services: the relay claims rows only under a transaction-level advisory lock of its outbox
(`pg_try_advisory_xact_lock`), so a test holding that lock keeps the relay from publishing; and
`LOCK TABLE ... IN SHARE MODE` lets the relay's `SELECT ... FOR UPDATE SKIP LOCKED` through (ROW SHARE)
but holds its `DELETE` (ROW EXCLUSIVE), so the relay publishes and then waits, and is killed there.
"""

from __future__ import annotations

import random
import uuid
import zlib
from collections import Counter

import asyncpg
import pytest

from tests.client import until
from tests.reliability.invariants import (
    assert_each_task_dispatched_once,
    assert_every_acknowledged_task_exists_once,
)
from tests.reliability.load import Operators
from tests.reliability.rig import Rig, http_session, per_subject

pytestmark = pytest.mark.e2e

INTAKE_RELAY_LOCK = zlib.crc32(b"errands-outbox:intake")
TASKS = 300


async def _submit(rig: Rig, count: int) -> Operators:
    operator = await rig.organisation()
    centre = (random.uniform(-40, 40), random.uniform(-170, 170))
    async with http_session() as http:
        operators = Operators(http, rig.intake_urls, operator, centre, seed=count)
        await operators.submit_many(count, concurrency=16)
    return operators


async def _waiting_in_outbox(rig: Rig, operators: Operators) -> int:
    count: int = await rig.value(
        "SELECT count(*) FROM intake.outbox WHERE key = ANY($1::text[])", operators.task_ids
    )
    return count


async def _dispatched_legs(rig: Rig, operators: Operators) -> bool | str:
    got = await rig.value(
        "SELECT count(*) FROM dispatch.legs WHERE task_id = ANY($1::uuid[])",
        [uuid.UUID(t) for t in operators.task_ids],
    )
    return got == len(operators.leg_ids) or f"{got}/{len(operators.leg_ids)} legs at the dispatcher"


async def _published(rig: Rig, operators: Operators) -> dict[str, Counter[str]]:
    """For each acknowledged task: how many times each `task.submitted` event id is on the topic."""
    seen = per_subject(await rig.records("errands.tasks.v1"), "task.submitted")
    return {task_id: seen.get(task_id, Counter()) for task_id in operators.task_ids}


async def _assert_effects_once(rig: Rig, operators: Operators, published: dict[str, Counter[str]]) -> None:
    await assert_every_acknowledged_task_exists_once(rig, operators)
    await until(
        lambda: _dispatched_legs(rig, operators),
        what="every leg reached the dispatcher",
        timeout_s=180,
        every_s=1.0,
    )
    await assert_each_task_dispatched_once(rig, operators)
    event_ids = [uuid.UUID(next(iter(ids))) for ids in published.values()]
    # Each consumer group applied each event once: one inbox row, one set of rows in its tables.
    for consumer, table in (("dispatcher", "dispatch.inbox"), ("notifier", "notify.inbox")):

        async def applied(consumer: str = consumer, table: str = table) -> bool | str:
            rows = await rig.fetch(
                f"SELECT event_id, count(*) AS n FROM {table} "  # noqa: S608
                "WHERE consumer = $1 AND event_id = ANY($2::uuid[]) GROUP BY event_id",
                consumer,
                event_ids,
            )
            assert all(row["n"] == 1 for row in rows)
            return len(rows) == len(event_ids) or f"{consumer}: {len(rows)}/{len(event_ids)} applied"

        await until(applied, what=f"{consumer} applied every task.submitted", timeout_s=180, every_s=1.0)
    notified = await rig.value(
        "SELECT count(*) FROM notify.legs WHERE task_id = ANY($1::uuid[])",
        [uuid.UUID(t) for t in operators.task_ids],
    )
    assert notified == len(operators.leg_ids)


async def test_intake_killed_after_commit_before_publish_publishes_every_task_once_back(rig: Rig) -> None:
    holder = await asyncpg.connect(rig.stack.database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", INTAKE_RELAY_LOCK)  # the relay cannot claim rows
        operators = await _submit(rig, TASKS)
        # Every acknowledged task is committed in the outbox, none published (rows go after publishing).
        assert await _waiting_in_outbox(rig, operators) == TASKS
        rig.kill("intake")
        await rig.restart("intake")
        assert await _waiting_in_outbox(rig, operators) == TASKS
    finally:
        await holder.execute("SELECT pg_advisory_unlock_all()")
        await holder.close()
    await until(lambda: _drained(rig, operators), what="intake's outbox drained", timeout_s=120, every_s=1.0)
    published = await _published(rig, operators)
    unpublished = [task for task, ids in published.items() if not ids]
    assert not unpublished, f"{len(unpublished)} acknowledged tasks never published"
    assert all(len(ids) == 1 for ids in published.values()), "one event id per task, however often published"
    await _assert_effects_once(rig, operators, published)


async def _drained(rig: Rig, operators: Operators) -> bool:
    return await _waiting_in_outbox(rig, operators) == 0


async def test_intake_killed_after_publish_before_delete_republishes_and_effects_happen_once(
    rig: Rig,
) -> None:
    holder = await asyncpg.connect(rig.stack.database_url)
    blocker = await asyncpg.connect(rig.stack.database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", INTAKE_RELAY_LOCK)
        operators = await _submit(rig, TASKS)
        assert await _waiting_in_outbox(rig, operators) == TASKS
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute("LOCK TABLE intake.outbox IN SHARE MODE")
        await holder.execute("SELECT pg_advisory_unlock_all()")

        async def relay_waits_to_delete() -> bool:
            waiting: int = await rig.value(
                "SELECT count(*) FROM pg_locks WHERE relation = 'intake.outbox'::regclass AND NOT granted"
            )
            return waiting > 0

        await until(
            relay_waits_to_delete, what="the relay published and waits to delete", timeout_s=60, every_s=0.2
        )

        async def all_on_the_topic() -> bool | str:
            published = await _published(rig, operators)
            missing = sum(1 for ids in published.values() if not ids)
            return missing == 0 or f"{missing} not yet on the topic"

        await until(all_on_the_topic, what="the batch is on the topic", timeout_s=60, every_s=1.0)
        rig.kill("intake")
        await blocking.rollback()
    finally:
        await holder.execute("SELECT pg_advisory_unlock_all()")
        await holder.close()
        await blocker.close()

    async def relay_gone() -> bool:
        return not await relay_waits_to_delete()

    await until(relay_gone, what="the killed relay's transaction ended", timeout_s=30, every_s=0.2)
    # Published, but the delete never committed: the rows are still there.
    assert await _waiting_in_outbox(rig, operators) == TASKS
    await rig.restart("intake")
    await until(lambda: _drained(rig, operators), what="intake's outbox drained", timeout_s=120, every_s=1.0)
    published = await _published(rig, operators)
    assert all(len(ids) == 1 for ids in published.values()), "one event id per task, however often published"
    copies = Counter(sum(ids.values()) for ids in published.values())
    assert set(copies) == {2}, f"each task published twice (before and after the crash): {copies}"
    await _assert_effects_once(rig, operators, published)
    # The second copies were really consumed and recognised, not merely never read.
    duplicates = {
        line.get("event_id")
        for line in rig.log_lines("dispatcher")
        if line.get("event") == "event.handled" and line.get("outcome") == "duplicate"
    }
    assert {str(next(iter(ids))) for ids in published.values()} <= duplicates
    print(f"\n{TASKS} tasks published twice each; the dispatcher's inbox skipped every second copy")
