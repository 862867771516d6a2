"""Issue 7, points 3 and 4: the broker cut off for 30 s, and PostgreSQL crashed and restarted, under load.

The broker is cut with SIGSTOP/SIGCONT rather than a TCP proxy. A frozen broker is the harsher of the
two: connections stay established and requests are accepted by the kernel but never answered, so
every client has to notice through its own timeouts, with no reset to tell it; and when the broker
wakes, 30 s have passed on its clock, so every group member's session looks expired at once. (Tansu
keeps its log in memory, so restarting it is not an option either way.)

No service is restarted in either test: they must come back by themselves.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from errands.ops import consumer_lag
from tests.client import until
from tests.reliability.invariants import (
    assert_each_task_dispatched_once,
    assert_every_acknowledged_task_exists_once,
    assert_no_double_assignment,
    assert_no_server_errors,
    outboxes_empty,
    wait_until_every_leg_offered,
)
from tests.reliability.load import Operators, Volunteers
from tests.reliability.rig import SERVICES, Rig, http_session

pytestmark = pytest.mark.e2e

CUT_S = 30.0  # the issue asks for 30 s
# After the cut every member's session has expired and groups re-form; a bound, not a target.
DRAIN_S = 600.0
GROUPS = ("dispatcher", "notifier", "intake-read-model")


async def _intake_caught_up(rig: Rig, operators: Operators) -> bool | str:
    """Intake's read model heard back from the dispatcher about every leg (the return path works)."""
    pending: int = await rig.value(
        "SELECT count(*) FROM intake.legs WHERE id = ANY($1::uuid[]) AND status = 'pending'",
        [uuid.UUID(leg) for leg in operators.leg_ids],
    )
    return pending == 0 or f"{pending} legs still pending in intake's read model"


async def _no_lag(rig: Rig) -> bool | str:
    rows = await consumer_lag(bootstrap=rig.stack.kafka_bootstrap, groups=GROUPS)
    lagging = {(row.group, row.topic, row.partition): row.lag for row in rows if row.lag}
    return not lagging or f"lag {lagging}"


async def _all_ready(rig: Rig) -> bool | str:
    statuses = {service: await rig.ready(service) for service in SERVICES}
    return all(status == 200 for status in statuses.values()) or f"readyz {statuses}"


@pytest.mark.timeout(900)
async def test_broker_cut_off_for_30s_under_load_loses_nothing_and_recovers_by_itself(rig: Rig) -> None:
    pids = {service: rig.pid(service) for service in SERVICES}
    centre = (random.uniform(-40, 40), random.uniform(-170, 170))
    operator = await rig.organisation()
    async with http_session() as http:
        operators = Operators(http, rig.intake_urls, operator, centre, seed=3)
        volunteers = Volunteers(http, rig.dispatcher_urls, operator, operators.codes, centre, seed=3)
        await volunteers.register(20)
        volunteers.start()
        submitting = asyncio.create_task(operators.submit_many(900, concurrency=8, per_s=15))
        try:
            while len(operators.acknowledged) < 100:
                await asyncio.sleep(0.2)
            before = len(operators.acknowledged)
            rig.embedded.kafka.pause()
            try:
                cut_started = time.monotonic()
                await asyncio.sleep(CUT_S)
                during = len(operators.acknowledged) - before
                held: int = await rig.value("SELECT count(*) FROM intake.outbox")
            finally:
                rig.embedded.kafka.resume()
            cut_s = time.monotonic() - cut_started
            await submitting
            await wait_until_every_leg_offered(rig, operators, volunteers, timeout_s=DRAIN_S)
            await until(lambda: outboxes_empty(rig), what="outboxes drained", timeout_s=DRAIN_S, every_s=1.0)
            await until(
                lambda: _intake_caught_up(rig, operators),
                what="intake's read model caught up",
                timeout_s=DRAIN_S,
                every_s=1.0,
            )
            await until(
                lambda: _no_lag(rig), what="consumer lag back to zero", timeout_s=DRAIN_S, every_s=1.0
            )
        finally:
            await volunteers.stop()
            if not submitting.done():
                submitting.cancel()
    assert during > 0, "intake kept acknowledging while the broker was away"
    assert held > 0, "the outbox held the work meanwhile"
    assert {service: rig.pid(service) for service in SERVICES} == pids, "nobody was restarted"
    await until(lambda: _all_ready(rig), what="every service ready", timeout_s=60, every_s=1.0)
    await assert_every_acknowledged_task_exists_once(rig, operators)
    await assert_each_task_dispatched_once(rig, operators)
    figures = await assert_no_double_assignment(rig, operators, volunteers)
    assert_no_server_errors(operators.tally, volunteers.tally)
    print(
        f"\nbroker frozen {cut_s:.0f}s: {during} tasks acknowledged meanwhile, {held} outbox rows held; "
        f"{figures}; operators: {operators.tally}"
    )


@pytest.mark.timeout(900)
async def test_postgres_crash_and_restart_under_load_services_recover_by_themselves(rig: Rig) -> None:
    pids = {service: rig.pid(service) for service in SERVICES}
    centre = (random.uniform(-40, 40), random.uniform(-170, 170))
    operator = await rig.organisation()
    async with http_session() as http:
        operators = Operators(http, rig.intake_urls, operator, centre, seed=4)
        volunteers = Volunteers(http, rig.dispatcher_urls, operator, operators.codes, centre, seed=4)
        await volunteers.register(20)
        volunteers.start()
        submitting = asyncio.create_task(operators.submit_many(600, concurrency=8, per_s=20))
        try:
            while len(operators.acknowledged) < 150:
                await asyncio.sleep(0.2)
            rig.embedded.postgres.kill()
            down_at = len(operators.acknowledged)
            await asyncio.sleep(3)
            await asyncio.to_thread(rig.embedded.postgres.start)
            await until(lambda: _all_ready(rig), what="every service ready again", timeout_s=120, every_s=1.0)
            assert {service: rig.pid(service) for service in SERVICES} == pids, "nobody was restarted"
            await submitting
            await wait_until_every_leg_offered(rig, operators, volunteers, timeout_s=DRAIN_S)
            await until(lambda: outboxes_empty(rig), what="outboxes drained", timeout_s=DRAIN_S, every_s=1.0)
        finally:
            await volunteers.stop()
            if not submitting.done():
                submitting.cancel()
    assert operators.tally.retried_keys > 0, "the crash was felt by the operators"
    assert {service: rig.pid(service) for service in SERVICES} == pids
    await assert_every_acknowledged_task_exists_once(rig, operators)
    await assert_each_task_dispatched_once(rig, operators)
    figures = await assert_no_double_assignment(rig, operators, volunteers)
    assert_no_server_errors(operators.tally, volunteers.tally)
    print(
        f"\nPostgreSQL killed after {down_at} acknowledgements and restarted; {figures}; "
        f"operators: {operators.tally}; volunteers: {volunteers.tally}"
    )
