"""The task read model carries each leg's estimates and its own escalations; the dashboard lists them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.entrypoints.schemas import OpsSnapshotOut, TaskOut
from services.intake.service_layer.dashboard import ops_snapshot
from services.intake.service_layer.tasks import get_task
from shared.events import LegAssigned, LegDelivered, LegEtaUpdated, LegPickedUp, TaskEscalated
from tests.integration.intake.test_ops_read_models import progress_at
from tests.integration.intake.test_service_layer import submit

Maker = async_sessionmaker[AsyncSession]


async def read(sessionmaker: Maker, task_id: str, organisation_id: uuid.UUID) -> dict[str, Any]:
    async with sessionmaker() as session:
        task = await get_task(session=session, task_id=uuid.UUID(task_id), organisation_id=organisation_id)
    TaskOut.model_validate(task)  # what GET /v1/tasks/{id} answers
    return task


async def test_estimates_follow_the_leg_and_a_late_legs_escalation_leaves_the_task_in_progress(
    sessionmaker: Maker,
) -> None:
    org, alice = uuid.uuid4(), uuid.uuid4()
    task = await submit(sessionmaker, org)
    tid, leg = task["id"], task["legs"][0]["id"]
    t0 = datetime.now(UTC)
    await progress_at(sessionmaker, tid, LegAssigned(task_id=tid, leg_id=leg, volunteer_id=alice), t0)
    pickup, dropoff = t0 + timedelta(minutes=8), t0 + timedelta(minutes=25)
    await progress_at(
        sessionmaker,
        tid,
        LegEtaUpdated(
            task_id=tid,
            leg_id=leg,
            volunteer_id=alice,
            leg_status="assigned",
            pickup_eta=pickup,
            dropoff_eta=dropoff,
        ),
        t0 + timedelta(seconds=1),
    )
    shown = (await read(sessionmaker, tid, org))["legs"][0]
    assert (shown["pickup_eta"], shown["dropoff_eta"], shown["eta_late"]) == (
        pickup.isoformat(),
        dropoff.isoformat(),
        False,
    )

    await progress_at(
        sessionmaker, tid, LegPickedUp(task_id=tid, leg_id=leg, volunteer_id=alice), t0 + timedelta(minutes=9)
    )
    refreshed = t0 + timedelta(minutes=40)
    await progress_at(
        sessionmaker,
        tid,
        LegEtaUpdated(
            task_id=tid,
            leg_id=leg,
            volunteer_id=alice,
            leg_status="picked_up",
            dropoff_eta=refreshed,
            late=True,
            slipped=True,
            slip=1,
        ),
        t0 + timedelta(minutes=10),
    )
    # An older estimate arriving late changes nothing.
    await progress_at(
        sessionmaker,
        tid,
        LegEtaUpdated(
            task_id=tid,
            leg_id=leg,
            volunteer_id=alice,
            leg_status="assigned",
            pickup_eta=pickup,
            dropoff_eta=dropoff,
        ),
        t0 + timedelta(seconds=2),
    )
    shown = (await read(sessionmaker, tid, org))["legs"][0]
    assert (shown["pickup_eta"], shown["dropoff_eta"], shown["eta_late"]) == (
        None,
        refreshed.isoformat(),
        True,
    )

    await progress_at(
        sessionmaker,
        tid,
        TaskEscalated(
            task_id=tid,
            leg_ids=[leg],
            reason="will_miss_deliver_by",
            leg_status="picked_up",
            dropoff_eta=refreshed,
        ),
        t0 + timedelta(minutes=11),
    )
    read_back = await read(sessionmaker, tid, org)
    assert read_back["status"] == "in_progress", "a leg under way escalates on its own"
    assert read_back["legs"][0]["escalation"]["reason"] == "will_miss_deliver_by"
    escalations = [e for e in read_back["timeline"] if e["type"] == "task.escalated"]
    assert [(e["leg_id"], e["reason"]) for e in escalations] == [(leg, "will_miss_deliver_by")]
    assert [e["type"] for e in read_back["timeline"]].count("leg.eta_updated") == 1, "only the slip"

    async with sessionmaker() as session:
        snapshot = await ops_snapshot(session=session)
    OpsSnapshotOut.model_validate(snapshot)
    (listed,) = [row for row in snapshot["escalated_legs"] if row["id"] == leg]
    assert (listed["reason"], listed["status"], listed["dropoff_eta"]) == (
        "will_miss_deliver_by",
        "picked_up",
        refreshed,
    )

    await progress_at(
        sessionmaker,
        tid,
        LegDelivered(task_id=tid, leg_id=leg, volunteer_id=alice),
        t0 + timedelta(minutes=30),
    )
    shown = (await read(sessionmaker, tid, org))["legs"][0]
    assert (shown["pickup_eta"], shown["dropoff_eta"]) == (None, None), "delivered: nothing to estimate"
    async with sessionmaker() as session:
        snapshot = await ops_snapshot(session=session)
    assert all(row["id"] != leg for row in snapshot["escalated_legs"]), "done legs leave the list"


async def test_an_unplaced_legs_escalation_still_makes_the_task_escalated(sessionmaker: Maker) -> None:
    org = uuid.uuid4()
    task = await submit(sessionmaker, org)
    tid, leg = task["id"], task["legs"][0]["id"]
    await progress_at(
        sessionmaker,
        tid,
        TaskEscalated(task_id=tid, leg_ids=[leg], reason="waited_too_long_pending", leg_status="pending"),
        datetime.now(UTC),
    )
    read_back = await read(sessionmaker, tid, org)
    assert read_back["status"] == "escalated"
    assert read_back["legs"][0]["escalation"]["reason"] == "waited_too_long_pending"
