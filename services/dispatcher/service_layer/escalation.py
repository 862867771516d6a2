"""Escalation: a task with a leg nobody took in time is raised to the operators, once; after that,
each leg that waits too long in any status, or will miss its `deliver_by`, is raised again on its own;
a leg handed back after pickup raises it at once, every time."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.domain import eligibility, eta
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.service_layer.changes import Changes
from shared.events import TaskEscalated
from shared.settings import Settings

# The reason of a `task.escalated` raised because a leg was handed back with the goods in hand.
NEEDS_DECISION = "leg_needs_decision"


async def escalate_now(
    session: AsyncSession,
    changes: Changes,
    *,
    task_id: uuid.UUID,
    leg_ids: list[uuid.UUID],
    reason: str,
    now: datetime,
) -> None:
    """Raise `task.escalated` in this transaction, whether or not the task was escalated before: an
    operator must act on these legs now. The task counts as escalated from then on (no second
    escalation for waiting too long)."""
    await repository.record_escalation(session, task_id=task_id, reason=reason, at=now)
    changes.add(TaskEscalated(task_id=task_id, leg_ids=sorted(leg_ids), reason=reason), task_id=task_id)


async def escalate_waiting_legs(
    session: AsyncSession, *, now: datetime, wait_limit_s: float, deadline_margin_s: float, limit: int = 1000
) -> Changes:
    """Tasks with a leg nobody took in time raise `task.escalated`, once; the legs stay dispatchable."""
    changes = Changes()
    due: dict[uuid.UUID, tuple[str, list[uuid.UUID]]] = {}
    for leg_id, task_id, waiting_since, deliver_by in await repository.unescalated_waiting_legs(
        session, now=now, limit=limit
    ):
        reason = eligibility.escalation_reason(
            waiting_s=(now - waiting_since).total_seconds(),
            deliver_by=deliver_by,
            now=now,
            wait_limit_s=wait_limit_s,
            deadline_margin_s=deadline_margin_s,
        )
        if reason is not None:
            due.setdefault(task_id, (reason, []))[1].append(leg_id)
    for task_id, (reason, leg_ids) in due.items():
        # The primary key decides which replica raises it: the other records nothing and stays quiet.
        if await repository.record_escalation(session, task_id=task_id, reason=reason, at=now):
            changes.add(
                TaskEscalated(task_id=task_id, leg_ids=sorted(leg_ids), reason=reason), task_id=task_id
            )
    return changes


async def escalate_overdue_legs(
    session: AsyncSession,
    *,
    now: datetime,
    wait_limits_s: dict[str, float],
    repeat_s: float,
    limit: int = 1000,
) -> Changes:
    """Each leg too long in its status, or whose estimate is past its `deliver_by`, raises
    `task.escalated` again, naming that leg and why; the same leg and reason at most once per
    `repeat_s`, whichever replica sees it first (the upsert's condition decides)."""
    changes = Changes()
    for leg, entered in await repository.overdue_legs(
        session,
        now=now,
        wait_limits_s=wait_limits_s,
        will_miss_reason=eta.WILL_MISS_DELIVER_BY,
        repeat_s=repeat_s,
        limit=limit,
    ):
        for reason in eta.escalation_reasons(
            status=leg.status,
            status_since=entered,
            dropoff_eta=leg.dropoff_eta,
            deliver_by=leg.deliver_by,
            now=now,
            wait_limits_s=wait_limits_s,
        ):
            if await repository.record_leg_escalation(
                session, leg_id=leg.id, reason=reason, at=now, repeat_s=repeat_s
            ):
                changes.add(
                    TaskEscalated(
                        task_id=leg.task_id,
                        leg_ids=[leg.id],
                        reason=reason,
                        leg_status=str(leg.status),
                        pickup_eta=leg.pickup_eta,
                        dropoff_eta=leg.dropoff_eta,
                        deliver_by=leg.deliver_by,
                    ),
                    task_id=leg.task_id,
                )
    return changes


def wait_limits(settings: Settings) -> dict[str, float]:
    """How long a leg may stay in each status before it escalates on its own."""
    return {
        LegStatus.PENDING: settings.leg_wait_limit_pending_s,
        LegStatus.OFFERED: settings.leg_wait_limit_offered_s,
        LegStatus.ASSIGNED: settings.leg_wait_limit_assigned_s,
        LegStatus.PICKED_UP: settings.leg_wait_limit_picked_up_s,
    }
