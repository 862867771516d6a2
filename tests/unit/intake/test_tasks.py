"""Cancelling a task, against an in-memory store: what is withdrawn, what is refused, what is published."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.intake.adapters.tables import LegRow, TaskRow
from services.intake.domain.errors import TaskAlreadyCompleted, TaskNotFound
from services.intake.entrypoints.http import ERROR_STATUSES
from services.intake.entrypoints.schemas import TaskOut
from services.intake.service_layer.progress import kept_data
from services.intake.service_layer.tasks import cancel, read_task
from shared.errors import Answer, answer_for
from shared.events import LegDelivered, LegPickedUp, build_event
from tests.unit.intake.fakes import FakeTasks

ORG = uuid.uuid4()
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def store(task_status: str, *leg_statuses: str) -> tuple[FakeTasks, uuid.UUID]:
    task_id = uuid.uuid4()
    task = TaskRow(
        id=task_id,
        organisation_id=ORG,
        kind="meal",
        priority="routine",
        status=task_status,
        request={
            "pickup": {"lat": 29.87, "lon": 121.55},
            "dropoffs": [{"lat": 29.88, "lon": 121.56} for _ in leg_statuses],
            "items": [],
        },
        transitions={"submitted": T0.isoformat()},
        created_at=T0,
        updated_at=T0,
    )
    legs = [
        LegRow(
            id=uuid.uuid4(),
            task_id=task_id,
            index=index,
            status=status,
            code_hash="",
            volunteer_id=None,
            volunteer_name=None,
            transitions={status: T0.isoformat()},
            updated_at=T0,
        )
        for index, status in enumerate(leg_statuses)
    ]
    return FakeTasks([task], legs), task_id


async def test_cancelling_withdraws_legs_not_yet_picked_up_and_publishes_task_cancelled() -> None:
    tasks, task_id = store("in_progress", "pending", "assigned", "picked_up")
    view = await cancel(tasks, task_id=task_id, organisation_id=ORG, reason="duplicate")
    assert view["status"] == "cancelled"
    assert [leg["status"] for leg in view["legs"]] == ["cancelled", "cancelled", "picked_up"]
    assert [event.type for _, event in tasks.events] == ["task.cancelled"]
    assert tasks.events[0][1].data["reason"] == "duplicate"
    assert [entry["type"] for entry in view["timeline"]] == ["task.cancelled"]


async def test_cancelling_again_changes_nothing_and_publishes_nothing() -> None:
    tasks, task_id = store("cancelled", "cancelled")
    before = await read_task(tasks, task_id=task_id, organisation_id=ORG)
    assert await cancel(tasks, task_id=task_id, organisation_id=ORG, reason=None) == before
    assert tasks.events == []


@pytest.mark.parametrize(
    ("task_status", "leg_statuses"),
    [("completed", ["confirmed"]), ("in_progress", ["confirmed", "confirmed"])],
)
async def test_an_ended_task_cannot_be_cancelled(task_status: str, leg_statuses: list[str]) -> None:
    tasks, task_id = store(task_status, *leg_statuses)
    with pytest.raises(TaskAlreadyCompleted) as refused:
        await cancel(tasks, task_id=task_id, organisation_id=ORG, reason=None)
    assert answer_for(refused.value, ERROR_STATUSES) == Answer(409, "Conflict")
    assert refused.value.message == "The task is already completed and can no longer be cancelled."
    assert tasks.events == [] and tasks.tasks[task_id].status == task_status


async def test_another_organisations_task_is_not_found() -> None:
    tasks, task_id = store("submitted", "pending")
    with pytest.raises(TaskNotFound) as refused:
        await cancel(tasks, task_id=task_id, organisation_id=uuid.uuid4(), reason=None)
    assert answer_for(refused.value, ERROR_STATUSES) == Answer(404, "Not found")
    assert refused.value.message == "No such task."
    assert tasks.tasks[task_id].status == "submitted"


async def test_the_photos_a_legs_delivery_reports_named_appear_on_the_leg_as_links() -> None:
    tasks, task_id = store("in_progress", "delivered", "delivered")
    legs = await tasks.legs(task_id)
    photo, again, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    reports: list[tuple[uuid.UUID, dict[str, Any]]] = [
        (legs[0].id, {"photo_id": photo, "photo_sha256": "a" * 64}),
        (legs[0].id, {"code_hash": "b" * 64}),
        (legs[0].id, {"photo_id": photo, "photo_sha256": "a" * 64}),  # the same photo named again
        (legs[0].id, {"photo_id": again, "photo_sha256": "c" * 64}),
        (legs[1].id, {"photo_id": other, "photo_sha256": "d" * 64}),
    ]
    for leg_id, proof in reports:
        data = LegDelivered(task_id=task_id, leg_id=leg_id, volunteer_id=uuid.uuid4(), **proof)
        _, event = build_event(data, source="/dispatcher", subject=task_id)
        await tasks.add_timeline(event, task_id=task_id, leg_id=leg_id, data=kept_data(event))
    _, picked = build_event(
        LegPickedUp(task_id=task_id, leg_id=legs[1].id, volunteer_id=uuid.uuid4()),
        source="/dispatcher",
        subject=task_id,
    )
    assert kept_data(picked) == {}, "the timeline keeps nothing of other events"

    view = await read_task(tasks, task_id=task_id, organisation_id=ORG)
    TaskOut.model_validate(view)
    assert view["legs"][0]["photos"] == [
        {"id": str(photo), "url": f"/v1/legs/{legs[0].id}/photos/{photo}"},
        {"id": str(again), "url": f"/v1/legs/{legs[0].id}/photos/{again}"},
    ]
    assert view["legs"][1]["photos"] == [{"id": str(other), "url": f"/v1/legs/{legs[1].id}/photos/{other}"}]
    assert all("sha256" not in str(row.data) for row in tasks.timeline_rows)
