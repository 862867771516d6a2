"""Reading tasks (one with its legs and timeline, or a page of summaries) and cancelling one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.repository import SqlTasks, Tasks
from services.intake.adapters.tables import LegRow
from services.intake.domain.errors import TaskAlreadyCompleted, TaskNotFound
from services.intake.domain.model import ListPosition, cancellation, leg_status_on_cancel
from services.intake.entrypoints.schemas import TaskListQuery
from shared.events import TaskCancelled, build_event


async def get_task(
    *, session: AsyncSession, task_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> dict[str, Any]:
    """A task with its legs and timeline; another organisation's task is indistinguishable from none."""
    return await read_task(SqlTasks(session), task_id=task_id, organisation_id=organisation_id)


async def read_task(tasks: Tasks, *, task_id: uuid.UUID, organisation_id: uuid.UUID | None) -> dict[str, Any]:
    """`get_task` on any store of tasks."""
    task = await tasks.get(task_id, organisation_id=organisation_id)
    if task is None:
        raise TaskNotFound()
    legs = await tasks.legs(task_id)
    timeline = await tasks.timeline(task_id)
    return {
        "id": str(task.id),
        "status": task.status,
        "kind": task.kind,
        "priority": task.priority,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "deliver_by": task.request.get("deliver_by"),
        "external_ref": task.request.get("external_ref"),
        "pickup": task.request["pickup"],
        "items": task.request["items"],
        "transitions": task.transitions,
        "legs": [
            {
                "id": str(leg.id),
                "index": leg.index,
                "status": leg.status,
                "dropoff": task.request["dropoffs"][leg.index],
                "volunteer": _volunteer(leg.volunteer_id, leg.volunteer_name),
                "transitions": leg.transitions,
                **_estimates(leg),
                "escalation": (
                    {"reason": leg.escalation_reason, "at": leg.escalated_at.isoformat()}
                    if leg.escalated_at is not None
                    else None
                ),
                "photos": _photos(leg.id, timeline),
            }
            for leg in legs
        ],
        "timeline": [
            {
                "type": row.type,
                "time": row.time.isoformat(),
                "leg_id": str(row.leg_id) if row.leg_id else None,
                "reason": (row.data or {}).get("reason"),
                "actor": (row.data or {}).get("actor"),
            }
            for row in timeline
        ],
    }


def _estimates(leg: LegRow) -> dict[str, Any]:
    """A leg under way: when the dispatcher expects it picked up and dropped off, and whether late."""
    if leg.status not in ("assigned", "picked_up") or leg.dropoff_eta is None:
        return {"pickup_eta": None, "dropoff_eta": None, "eta_late": False}
    return {
        "pickup_eta": leg.pickup_eta.isoformat() if leg.pickup_eta else None,
        "dropoff_eta": leg.dropoff_eta.isoformat(),
        "eta_late": bool(leg.eta_late),
    }


def _photos(leg_id: uuid.UUID, timeline: list[Any]) -> list[dict[str, str]]:
    """The photos the leg's delivery reports named, each once, with the dispatcher's path to fetch it."""
    found: dict[str, dict[str, str]] = {}
    for row in timeline:
        photo_id = row.data.get("photo_id") if row.type == "leg.delivered" and row.leg_id == leg_id else None
        if isinstance(photo_id, str) and photo_id not in found:
            found[photo_id] = {"id": photo_id, "url": f"/v1/legs/{leg_id}/photos/{photo_id}"}
    return list(found.values())


def _volunteer(leg_volunteer_id: uuid.UUID | None, name: str | None) -> dict[str, Any] | None:
    return {"id": str(leg_volunteer_id), "name": name} if leg_volunteer_id else None


async def list_tasks(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID | None,
    query: TaskListQuery,
    after: ListPosition | None,
) -> dict[str, Any]:
    """A page of task summaries in arrival order; `organisation_id=None` reads every organisation."""
    tasks = SqlTasks(session)
    rows = await tasks.page(
        organisation_id=organisation_id,
        status=query.status,
        kind=query.kind,
        priority=query.priority,
        after=after,
        limit=query.limit + 1,
    )
    page, more = rows[: query.limit], len(rows) > query.limit
    end = ListPosition(page[-1].xid, page[-1].seq) if page else after
    legs_of: dict[uuid.UUID, list[dict[str, Any]]] = {row.id: [] for row in page}
    for leg in await tasks.leg_summaries(list(legs_of)):
        legs_of[leg.task_id].append(
            {
                "id": str(leg.id),
                "index": leg.index,
                "status": leg.status,
                "volunteer": _volunteer(leg.volunteer_id, leg.volunteer_name),
            }
        )
    return {
        "items": [
            {
                "id": str(row.id),
                "status": row.status,
                "kind": row.kind,
                "priority": row.priority,
                "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat(),
                "deliver_by": row.deliver_by,
                "external_ref": row.external_ref,
                "legs": legs_of[row.id],
            }
            for row in page
        ],
        # Always where this page ended (or began, when empty), so a client can come back for tasks
        # that arrive later; `has_more` says whether to ask again at once.
        "next_cursor": end.encode() if end is not None else None,
        "has_more": more,
    }


async def cancel_task(
    *, session: AsyncSession, task_id: uuid.UUID, organisation_id: uuid.UUID, reason: str | None
) -> dict[str, Any]:
    """Cancel a task of `organisation_id` and publish `task.cancelled`; cancelling again changes nothing."""
    return await cancel(SqlTasks(session), task_id=task_id, organisation_id=organisation_id, reason=reason)


async def cancel(
    tasks: Tasks, *, task_id: uuid.UUID, organisation_id: uuid.UUID, reason: str | None
) -> dict[str, Any]:
    """`cancel_task` on any store of tasks."""
    task = await tasks.lock(task_id, organisation_id=organisation_id)
    if task is None:
        raise TaskNotFound()
    legs = await tasks.legs(task_id)
    decision = cancellation(task.status, [leg.status for leg in legs])
    if decision == "completed":
        raise TaskAlreadyCompleted()
    if decision == "cancel":
        now = datetime.now(UTC)
        await tasks.update_task(
            task_id,
            status="cancelled",
            transitions={**task.transitions, "cancelled": now.isoformat()},
            updated_at=now,
        )
        for leg in legs:
            status = leg_status_on_cancel(leg.status)
            if status != leg.status:
                await tasks.update_leg(
                    leg.id,
                    status=status,
                    transitions={**leg.transitions, status: now.isoformat()},
                    updated_at=now,
                )
        topic, event = build_event(
            TaskCancelled(task_id=task_id, organisation_id=organisation_id, reason=reason),
            source="/intake",
            subject=task_id,
        )
        await tasks.add_timeline(event, task_id=task_id, leg_id=None)
        await tasks.add_events([(topic, event)])
        # The reason is free text a person typed: the trail keeps only whether there was one.
        await tasks.add_audit(
            "task.cancelled",
            organisation_id=organisation_id,
            task_id=task_id,
            reason_given=reason is not None,
        )
    return await read_task(tasks, task_id=task_id, organisation_id=organisation_id)
