"""Issue 7, points 1 and 5: the dispatcher killed mid-stream, and scaled 1 → 3 → 1, under load.

After the load drains: every acknowledged task exists, every leg reached an offer, no leg has two
live offers or two assignments, and no volunteer is above their limit or miscounted.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

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
from tests.reliability.rig import Rig, http_session, per_subject

pytestmark = pytest.mark.e2e

SOAK = os.environ.get("ERRANDS_SOAK") == "1"
# How long a drain may go without a leg newly offered (or an event newly published) before it
# counts as stalled. A killed member stays in the consumer group until its session (30 s) expires,
# and the group waits for it before reassigning partitions: this allows for a few of those.
DRAIN_S = 240.0


@pytest.mark.timeout(2400)
@pytest.mark.parametrize(
    ("tasks", "kills", "crew"),
    [
        # Enough volunteers that the crew's own pace (poll, accept, pick up, deliver: about one leg
        # per volunteer every few seconds here) does not set how long the run takes.
        pytest.param(2_000, 3, 30, id="2k"),
        pytest.param(
            10_000,
            8,
            150,
            id="10k",
            marks=[pytest.mark.soak, pytest.mark.skipif(not SOAK, reason="soak run only (ERRANDS_SOAK=1)")],
        ),
    ],
)
async def test_killing_the_dispatcher_mid_stream_loses_nothing_and_never_double_assigns(
    rig: Rig, tasks: int, kills: int, crew: int
) -> None:
    centre = (random.uniform(-40, 40), random.uniform(-170, 170))
    operator = await rig.organisation()
    async with http_session() as http:
        operators = Operators(http, rig.intake_urls, operator, centre, seed=tasks)
        volunteers = Volunteers(http, rig.dispatcher_urls, operator, operators.codes, centre, seed=tasks)
        await volunteers.register(crew)
        volunteers.start()
        started = time.monotonic()
        # Paced, so that the kills fall while tasks still stream in.
        submitting = asyncio.create_task(operators.submit_many(tasks, concurrency=24, per_s=60))
        killed_at: list[int] = []
        try:
            for kill in range(kills):
                target = tasks * (kill + 1) // (kills + 1)
                while len(operators.acknowledged) < target and not submitting.done():
                    await asyncio.sleep(0.2)
                if submitting.done():
                    break
                rig.kill("dispatcher")
                killed_at.append(len(operators.acknowledged))
                await asyncio.sleep(random.uniform(0.5, 2.0))
                await rig.restart("dispatcher")
            await submitting
            submitted_s = time.monotonic() - started
            await wait_until_every_leg_offered(rig, operators, volunteers, timeout_s=DRAIN_S)
            await until(lambda: outboxes_empty(rig), what="outboxes drained", timeout_s=DRAIN_S, every_s=1.0)
        finally:
            await volunteers.stop()
            if not submitting.done():
                submitting.cancel()
    assert len(killed_at) == kills and all(0 < at < tasks for at in killed_at), killed_at
    await assert_every_acknowledged_task_exists_once(rig, operators)
    await assert_each_task_dispatched_once(rig, operators)
    figures = await assert_no_double_assignment(rig, operators, volunteers)
    assert_no_server_errors(operators.tally, volunteers.tally)
    assignments = per_subject(await rig.records("errands.dispatch.v1"), "leg.assigned", key="leg_id")
    twice = {leg: ids for leg, ids in assignments.items() if leg in operators.codes and len(ids) > 1}
    assert not twice, f"legs assigned by two different events: {list(twice.items())[:3]}"
    print(
        f"\n{tasks} tasks / {len(operators.leg_ids)} legs, dispatcher killed after {killed_at} acks; "
        f"submitted in {submitted_s:.0f}s, drained in {time.monotonic() - started:.0f}s; {figures}; "
        f"operators: {operators.tally}; volunteers: {volunteers.tally}"
    )


@pytest.mark.timeout(900)
async def test_scaling_the_dispatcher_1_3_1_under_load_never_double_assigns(rig: Rig) -> None:
    centre = (random.uniform(-40, 40), random.uniform(-170, 170))
    operator = await rig.organisation()
    async with http_session() as http:
        operators = Operators(http, rig.intake_urls, operator, centre, seed=5)
        volunteers = Volunteers(http, rig.dispatcher_urls, operator, operators.codes, centre, seed=5)
        await volunteers.register(20)
        volunteers.start()
        submitting = asyncio.create_task(operators.submit_many(800, concurrency=8, per_s=40))
        sizes: list[int] = []
        exits: list[tuple[int | None, float]] = []
        try:
            for _ in range(2):
                for _ in range(2):
                    await rig.add_dispatcher()
                    sizes.append(len(rig.dispatcher_urls()))
                    await asyncio.sleep(2)
                for _ in range(2):
                    exits.append(await rig.remove_dispatcher())
                    sizes.append(len(rig.dispatcher_urls()))
                    await asyncio.sleep(2)
            await submitting
            await wait_until_every_leg_offered(rig, operators, volunteers, timeout_s=DRAIN_S)
            await until(lambda: outboxes_empty(rig), what="outboxes drained", timeout_s=DRAIN_S, every_s=1.0)
        finally:
            await volunteers.stop()
            if not submitting.done():
                submitting.cancel()
    assert sizes == [2, 3, 2, 1, 2, 3, 2, 1]
    assert all(code == 0 for code, _ in exits), exits
    await assert_every_acknowledged_task_exists_once(rig, operators)
    await assert_each_task_dispatched_once(rig, operators)
    figures = await assert_no_double_assignment(rig, operators, volunteers)
    assert_no_server_errors(operators.tally, volunteers.tally)
    print(f"\nscaled {sizes}; scale-down exits {exits}; {figures}; volunteers: {volunteers.tally}")
