"""Issue 7, point 8: SIGTERM each service under load.

Each exits with status 0 within its grace period (a bound, not a speed target); what it had in hand
is finished or redelivered to its successor; nothing happens twice: one task per key, one set of legs
per task, one assignment per leg, one confirmation per delivered leg.
"""

from __future__ import annotations

import asyncio
import random
import uuid

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
from tests.reliability.rig import SERVICES, Rig, http_session, per_subject

pytestmark = pytest.mark.e2e

# `serve` gives in-flight requests 20 s and background loops 10 s: 30 s bounds a clean exit.
GRACE_S = 30.0
DRAIN_S = 600.0


async def _every_delivery_confirmed(rig: Rig, operators: Operators) -> bool | str:
    """Every leg delivered at the dispatcher is confirmed by the notifier and back at the dispatcher."""
    rows = await rig.fetch(
        """
        SELECT count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
               count(*) FILTER (WHERE d.status = 'confirmed') AS confirmed,
               count(*) FILTER (WHERE d.status IN ('delivered', 'confirmed')
                                  AND n.status IS DISTINCT FROM 'confirmed') AS unconfirmed
        FROM dispatch.legs d LEFT JOIN notify.legs n ON n.id = d.id
        WHERE d.id = ANY($1::uuid[])
        """,
        [uuid.UUID(leg) for leg in operators.leg_ids],
    )
    row = rows[0]
    done = row["delivered"] == 0 and row["unconfirmed"] == 0 and row["confirmed"] > 0
    return done or f"{dict(row)}"


@pytest.mark.timeout(900)
async def test_sigterm_each_service_under_load_exits_cleanly_and_nothing_happens_twice(rig: Rig) -> None:
    centre = (random.uniform(-40, 40), random.uniform(-170, 170))
    operator = await rig.organisation()
    exits: dict[str, tuple[int | None, float]] = {}
    async with http_session() as http:
        operators = Operators(http, rig.intake_urls, operator, centre, seed=8)
        volunteers = Volunteers(http, rig.dispatcher_urls, operator, operators.codes, centre, seed=8)
        await volunteers.register(20)
        volunteers.start()
        submitting = asyncio.create_task(operators.submit_many(900, concurrency=16, per_s=25))
        try:
            for service in SERVICES:
                await asyncio.sleep(4)
                exits[service] = await rig.terminate(service)
                await rig.restart(service)
            await submitting
            await wait_until_every_leg_offered(rig, operators, volunteers, timeout_s=DRAIN_S)
        finally:
            await volunteers.stop()
            if not submitting.done():
                submitting.cancel()
    await until(lambda: outboxes_empty(rig), what="outboxes drained", timeout_s=DRAIN_S, every_s=1.0)
    await until(
        lambda: _every_delivery_confirmed(rig, operators),
        what="every delivery confirmed",
        timeout_s=DRAIN_S,
        every_s=1.0,
    )
    for service, (code, took) in exits.items():
        assert code == 0, f"{service} exited with {code} after SIGTERM"
        assert took < GRACE_S, f"{service} took {took:.1f}s to stop"
    await assert_every_acknowledged_task_exists_once(rig, operators)
    await assert_each_task_dispatched_once(rig, operators)
    figures = await assert_no_double_assignment(rig, operators, volunteers)
    assert_no_server_errors(operators.tally, volunteers.tally)
    mine = set(operators.codes)
    assigned = per_subject(await rig.records("errands.dispatch.v1"), "leg.assigned", key="leg_id")
    confirmed = per_subject(await rig.records("errands.confirmations.v1"), "leg.confirmed", key="leg_id")
    twice = {leg: ids for leg, ids in (assigned | confirmed).items() if leg in mine and len(ids) > 1}
    assert not twice, f"legs assigned or confirmed by two different events: {list(twice.items())[:3]}"
    confirmed_legs = {leg for leg in confirmed if leg in mine}
    assert len(confirmed_legs) == figures["delivered"]
    print(
        "\nSIGTERM exits: "
        + ", ".join(f"{s} {code} in {took:.1f}s" for s, (code, took) in exits.items())
        + f"; {figures}; operators: {operators.tally}; volunteers: {volunteers.tally}"
    )
