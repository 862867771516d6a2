"""Tasks and their legs: statuses, how a status follows the events of its legs, cancelling. No IO here."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["errand", "meal", "supply_run"]
Priority = Literal["routine", "urgent", "critical"]
Vehicle = Literal["foot", "bicycle", "ebike", "car", "van"]
# A task ends `completed` (every leg confirmed), `cancelled`, `failed` (every leg ended and none was
# delivered: at least one failed) or `partially_completed` (some legs confirmed, some failed).
TaskStatus = Literal[
    "submitted",
    "dispatching",
    "in_progress",
    "completed",
    "cancelled",
    "escalated",
    "failed",
    "partially_completed",
]
# `needs_decision`: handed back after pickup, the goods with the volunteer, waiting for an operator.
LegStatus = Literal[
    "pending",
    "offered",
    "assigned",
    "picked_up",
    "delivered",
    "confirmed",
    "failed",
    "cancelled",
    "needs_decision",
]
# The statuses a task ends in: no event changes them.
FINISHED_TASK: frozenset[str] = frozenset({"completed", "cancelled", "failed", "partially_completed"})
# Leg statuses nothing follows.
ENDED_LEG: frozenset[str] = frozenset({"confirmed", "failed", "cancelled"})

# Two 63-bit numbers in hexadecimal: any string of this form is a position to list from.
TASK_CURSOR_PATTERN = "^[0-7][0-9a-f]{15}[0-7][0-9a-f]{15}$"


@dataclass(frozen=True, order=True)
class ListPosition:
    """Where a page of tasks ended: (writing transaction id, task sequence number).

    Tasks are listed in this order and only once every transaction that could still add a task
    before this position has finished, so a cursor never skips or repeats a task.
    """

    xid: int
    seq: int

    def encode(self) -> str:
        """The opaque cursor a client hands back for the next page: TASK_CURSOR_PATTERN, exactly."""
        return f"{self.xid:016x}{self.seq:016x}"

    @classmethod
    def decode(cls, cursor: str) -> ListPosition:
        """The position behind a cursor; ValueError when it is not one of ours."""
        if re.fullmatch(TASK_CURSOR_PATTERN, cursor):
            return cls(int(cursor[:16], 16), int(cursor[16:], 16))
        # The earlier form, base64 of `t1:<xid>:<seq>`: a client may still hold one to poll with.
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError) as exc:
            raise ValueError("not a cursor") from exc
        match = re.fullmatch(r"t1:([0-9]{1,19}):([0-9]{1,19})", raw)
        if match is None:
            raise ValueError("not a cursor")
        xid, seq = int(match.group(1)), int(match.group(2))
        if xid >= 2**63 or seq >= 2**63:
            raise ValueError("not a cursor")
        return cls(xid, seq)


# A leg moves forward through these ranks; an event never moves it backwards, except the
# explicit hand-backs below, so duplicates and late arrivals from another topic change nothing.
LEG_RANK: dict[str, int] = {
    "pending": 0,
    "offered": 1,
    "assigned": 2,
    "picked_up": 3,
    "needs_decision": 3,
    "delivered": 4,
    "confirmed": 5,
    "failed": 6,
    "cancelled": 6,
}

_LEG_STATUS_AFTER: dict[str, str] = {
    "leg.offered": "offered",
    "leg.assigned": "assigned",
    "leg.picked_up": "picked_up",
    "leg.delivered": "delivered",
    "leg.confirmed": "confirmed",
    "leg.failed": "failed",
}
_HANDED_BACK = {"leg.offer_declined", "leg.offer_expired", "leg.problem_reported"}
# An operator's decision sends a leg waiting for one back to dispatch (a hand-over to a chosen
# volunteer is followed by its `leg.assigned`); `leg.failed` ends it.
_DECIDED = "leg.decided"

# A leg whose goods are still at the pickup: a hand-back returns it to dispatch, and cancelling its task
# withdraws it. Once picked up, the goods are in a volunteer's hands and the leg finishes its trip.
NOT_YET_PICKED_UP: frozenset[str] = frozenset({"pending", "offered", "assigned"})


def not_yet_picked_up(status: str) -> bool:
    """Whether a leg in `status` still has its goods at the pickup."""
    return status in NOT_YET_PICKED_UP


def leg_status_after(current: str, event_type: str, *, decided: str | None = None) -> str:
    """A leg's status once `event_type` has happened to it.

    A problem reported before pickup sends the leg back to pending; after pickup it waits for an
    operator's decision (`needs_decision`), which sends it back to pending (`leg.decided`; cancelled
    once its task is), or fails it.
    """
    if event_type in _HANDED_BACK:
        if not_yet_picked_up(current):
            return "pending"
        after_pickup = event_type == "leg.problem_reported" and current == "picked_up"
        return "needs_decision" if after_pickup else current
    if event_type == _DECIDED:  # `decided`: the status the dispatcher gave the leg
        if current != "needs_decision":
            return current
        return "cancelled" if decided == "cancelled" else "pending"
    target = _LEG_STATUS_AFTER.get(event_type)
    if target is None or LEG_RANK[target] <= LEG_RANK[current]:
        return current
    return target


# The task status each event proves the task has been in. Dispatch and confirmation events travel on
# different topics, so a task can be completed before the projection hears that its leg was offered.
_TASK_STAGE_OF: dict[str, str] = {
    "leg.offered": "dispatching",
    "leg.assigned": "in_progress",
    "leg.picked_up": "in_progress",
    "leg.delivered": "in_progress",
    "leg.confirmed": "in_progress",
    "task.escalated": "escalated",
    "task.completed": "completed",
}


def leg_stage_of(event_type: str) -> str | None:
    """The leg status `event_type` proves the leg has been in, whatever its status is now."""
    return _LEG_STATUS_AFTER.get(event_type)


def task_stage_of(event_type: str) -> str | None:
    """The task status `event_type` proves the task has been in, whatever its status is now."""
    return _TASK_STAGE_OF.get(event_type)


def history_after(
    transitions: dict[str, str], *, before: str, after: str, stage: str | None, at: str
) -> dict[str, str]:
    """The time of each status once an event has moved a task or leg from `before` to `after`.

    A new status is stamped with the event's time (a status re-entered, like a re-offer, takes the
    new time). A stage the event proves but that came late, after a later status, is filled in at
    the event's own time and never moves the status back.
    """
    updated = dict(transitions)
    if after != before:
        updated[after] = at
    if stage is not None and stage not in updated:
        updated[stage] = at
    return updated


def escalation_moves_task(escalated_leg_statuses: list[str]) -> bool:
    """Whether a `task.escalated` makes the task `escalated`: only for a leg nobody has taken yet. A
    leg under way that is late or stuck is escalated on its own, and its task stays in progress."""
    return not escalated_leg_statuses or any(
        LEG_RANK[s] < LEG_RANK["assigned"] for s in escalated_leg_statuses
    )


def task_status_after(
    current: str, leg_statuses: list[str], event_type: str, *, escalates_task: bool = True
) -> str:
    """A task's status given its legs' statuses once `event_type` has been applied.

    Once every leg has ended and one failed, the task ends too: `failed` when none was confirmed,
    else `partially_completed`. While a leg waits for an operator's decision, the task is escalated.
    A `task.escalated` that does not move the task (`escalation_moves_task`) counts as no event.
    """
    if current in FINISHED_TASK:
        return current
    if event_type == "task.completed":
        return "completed"
    if event_type == "task.cancelled":
        return "cancelled"
    if leg_statuses and "failed" in leg_statuses and all(s in ENDED_LEG for s in leg_statuses):
        return "partially_completed" if "confirmed" in leg_statuses else "failed"
    if (event_type == "task.escalated" and escalates_task) or "needs_decision" in leg_statuses:
        return "escalated"  # an operator must act: it stays so while a leg waits for their decision
    if any(LEG_RANK[s] >= LEG_RANK["assigned"] and s not in ("failed", "cancelled") for s in leg_statuses):
        return "in_progress"
    if current == "escalated":
        return current
    if any(s == "offered" for s in leg_statuses) or current == "dispatching":
        return "dispatching"
    return current


Cancellation = Literal["cancel", "already_cancelled", "completed"]


def cancellation(task_status: str, leg_statuses: list[str]) -> Cancellation:
    """What cancelling a task in this state does: cancel it, nothing (already done), or refuse."""
    if task_status == "cancelled":
        return "already_cancelled"
    if task_status in FINISHED_TASK or (leg_statuses and all(s == "confirmed" for s in leg_statuses)):
        return "completed"
    return "cancel"


def leg_status_on_cancel(status: str) -> str:
    """A leg's status once its task is cancelled."""
    return "cancelled" if not_yet_picked_up(status) else status
