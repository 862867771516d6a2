"""Intake's read model: each dispatch and confirmation event folded into its task, legs and timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.intake.adapters.repository import SqlTasks, TimelineEntry
from services.intake.adapters.tables import LegRow, TaskRow
from services.intake.domain.model import (
    escalation_moves_task,
    history_after,
    leg_stage_of,
    leg_status_after,
    task_stage_of,
    task_status_after,
)
from services.intake.domain.timings import TimingObservation, timings_completed
from shared.consumer import PermanentError
from shared.events import CloudEvent
from shared.metrics import DISPATCH_TIMINGS


async def apply_progress(session: AsyncSession, event: CloudEvent) -> None:
    """Fold one dispatch or confirmation event into its task's read model and timeline."""
    await apply_progress_batch(session, [event])


async def apply_progress_batch(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Fold events, in their order, into their tasks' read models and timelines.

    Each event is folded as it would be alone, onto what the events before it left; the statements
    are the batch's, not each event's: its tasks locked in one, their legs read in one, the timeline
    written in one, and the rows changed written together when the session flushes. At two hundred
    tasks a second, one event at a time took about half of intake's CPU.
    """
    tasks = SqlTasks(session)
    task_ids = [uuid.UUID(event.subject) for event in events]
    found = await tasks.lock_all(set(task_ids))
    legs_of = await tasks.legs_of(found.keys())
    timeline: list[TimelineEntry] = []
    for task_id, event in zip(task_ids, events, strict=True):
        task = found.get(task_id)
        if task is None:
            raise PermanentError(f"unknown task {task_id}")
        leg_id_raw = event.data.get("leg_id")
        leg_id = uuid.UUID(leg_id_raw) if isinstance(leg_id_raw, str) else _escalated_leg(event)
        if event.type != "leg.eta_updated" or event.data.get("slipped"):
            # Estimates come every few minutes while a leg is under way; the timeline keeps the slips.
            timeline.append(TimelineEntry(event, task_id, leg_id, kept_data(event)))
        _fold(session, task, legs_of.get(task_id, []), event, leg_id)
    await tasks.add_timelines(timeline)


def _fold(
    session: AsyncSession, task: TaskRow, legs: list[LegRow], event: CloudEvent, leg_id: uuid.UUID | None
) -> None:
    """One event onto its task and legs as loaded (changed in place, written when the session flushes)."""
    moment = event.time.isoformat()
    escalates_task = event.type != "task.escalated" or escalation_moves_task(
        [leg.status for leg in legs if str(leg.id) in event.data.get("leg_ids", [])]
    )
    if leg_id is not None:
        leg = next((leg for leg in legs if leg.id == leg_id), None)
        if leg is None:
            raise PermanentError(f"leg {leg_id} is not part of task {task.id}")
        decided = event.data.get("status") if event.type == "leg.decided" else None
        status = leg_status_after(
            leg.status, event.type, decided=decided if isinstance(decided, str) else None
        )
        history = history_after(
            leg.transitions, before=leg.status, after=status, stage=leg_stage_of(event.type), at=moment
        )
        for reached in history.keys() - leg.transitions.keys():
            _observe_after_commit(
                session,
                task.priority,
                timings_completed(
                    transitions_before=leg.transitions,
                    reached=reached,
                    at=event.time,
                    submitted_at=task.created_at,
                ),
            )
        values: dict[str, Any] = {}
        if history != leg.transitions:
            values["transitions"] = history
        if status != leg.status:
            values |= {"status": status, "updated_at": event.time}
        if event.type == "leg.assigned" and status != "cancelled":
            values["volunteer_id"] = uuid.UUID(event.data["volunteer_id"])
            values["volunteer_name"] = event.data.get("volunteer_name") or event.data.get(
                "volunteer_name_masked"
            )
        elif status == "pending" and leg.volunteer_id is not None:
            values["volunteer_id"] = None
            values["volunteer_name"] = None
        values |= _estimates_after(leg, event, status)
        if event.type == "task.escalated":
            values |= {"escalation_reason": event.data.get("reason"), "escalated_at": event.time}
        elif event.type == "leg.confirmation_failed" and event.data.get("flagged"):
            # A delivery flagged for too many wrong codes waits for a coordinator's decision.
            values |= {"escalation_reason": DELIVERY_FLAGGED, "escalated_at": event.time}
        for column, value in values.items():
            setattr(leg, column, value)
    task_status = task_status_after(
        task.status, [leg.status for leg in legs], event.type, escalates_task=escalates_task
    )
    stage = task_stage_of(event.type) if escalates_task else None
    history = history_after(task.transitions, before=task.status, after=task_status, stage=stage, at=moment)
    if history != task.transitions:
        task.transitions = history
    if task_status != task.status:
        task.status, task.updated_at = task_status, event.time


def _escalated_leg(event: CloudEvent) -> uuid.UUID | None:
    """The leg a `task.escalated` raised on its own (it names its status), else None."""
    leg_ids = event.data.get("leg_ids")
    if event.type != "task.escalated" or not event.data.get("leg_status") or not isinstance(leg_ids, list):
        return None
    return uuid.UUID(leg_ids[0]) if len(leg_ids) == 1 else None


# The events the task read model follows (each applied by `apply_progress`).
PROGRESS_EVENTS = (
    "leg.offered",
    "leg.offer_declined",
    "leg.offer_expired",
    "leg.assigned",
    "leg.picked_up",
    "leg.delivered",
    "leg.problem_reported",
    "leg.decided",
    "leg.failed",
    "task.escalated",
    "leg.eta_updated",
    "leg.confirmed",
    "leg.confirmation_failed",
    "task.completed",
)

_EN_ROUTE = ("assigned", "picked_up")
# The escalation of a delivered leg flagged for too many wrong confirmation codes.
DELIVERY_FLAGGED = "delivery_flagged"
_NO_ESTIMATES = {"pickup_eta": None, "dropoff_eta": None, "eta_late": False, "eta_updated_at": None}


def _estimates_after(leg: LegRow, event: CloudEvent, status: str) -> dict[str, Any]:
    """The leg's estimates once `event` is applied: a newer `leg.eta_updated` from its holder sets
    them; a new holder, or a leg no longer under way, has none."""
    if event.type == "leg.eta_updated":
        newer = leg.eta_updated_at is None or event.time >= leg.eta_updated_at
        holder = event.data.get("volunteer_id") == (str(leg.volunteer_id) if leg.volunteer_id else None)
        if status not in _EN_ROUTE or not newer or not holder:
            return {}
        return {
            "pickup_eta": _time(event.data.get("pickup_eta")),
            "dropoff_eta": _time(event.data.get("dropoff_eta")),
            "eta_late": bool(event.data.get("late")),
            "eta_updated_at": event.time,
        }
    if leg.dropoff_eta is not None and (event.type == "leg.assigned" or status not in _EN_ROUTE):
        return dict(_NO_ESTIMATES)
    return {}


def _time(raw: object) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def kept_data(event: CloudEvent) -> dict[str, Any]:
    """What the timeline keeps of an event's data, for the task's view and the daily report: a
    delivery's proof photo, an escalation's reason (a code such as `will_miss_deliver_by`), whether
    the assigned volunteer speaks the drop-off's language; never personal data."""
    photo_id, reason = event.data.get("photo_id"), event.data.get("reason")
    if event.type == "leg.delivered" and isinstance(photo_id, str):
        return {"photo_id": photo_id}
    if event.type == "task.escalated" and isinstance(reason, str):
        return {"reason": reason}
    speaks = event.data.get("speaks_dropoff_language")
    if event.type == "leg.assigned" and isinstance(speaks, bool):
        return {"speaks_dropoff_language": speaks}
    return {}


_PENDING_TIMINGS = "intake.pending_dispatch_timings"


def _observe_after_commit(
    session: AsyncSession, priority: str, observations: list[TimingObservation]
) -> None:
    """Observe the dispatch timing histograms once this transaction commits, and never if it rolls back.

    A handler that fails and is retried must not count its first attempt.
    """
    if not observations:
        return
    sync_session = session.sync_session
    pending: list[tuple[str, TimingObservation]] | None = sync_session.info.get(_PENDING_TIMINGS)
    if pending is None:
        pending = sync_session.info[_PENDING_TIMINGS] = []
        orm_event.listen(sync_session, "after_commit", _observe_pending)
        orm_event.listen(sync_session, "after_rollback", _forget_pending)
    pending.extend((priority, observation) for observation in observations)


def _observe_pending(sync_session: Session) -> None:
    pending = sync_session.info.get(_PENDING_TIMINGS) or []
    for priority, observation in pending:
        DISPATCH_TIMINGS[observation.timing.name].labels(priority).observe(observation.seconds)
    pending.clear()


def _forget_pending(sync_session: Session) -> None:
    (sync_session.info.get(_PENDING_TIMINGS) or []).clear()
