"""A leg's life in the dispatcher: its statuses, the moves between them and what causes each. No IO here.

    pending -> offered -> assigned -> picked_up -> delivered -> confirmed

and the side exits: an offer declined or expired sends the leg back to pending (without that
volunteer); a problem reported (or the volunteer deactivated) before pickup sends the leg back to
pending; a cancelled task takes every leg not yet picked up. An operator may assign a pending or
offered leg by hand: the same `assign` as accepting an offer; and may move an assigned leg, not
yet picked up, to another volunteer (`move`), or release it to pending.

A leg handed back after pickup has its goods in the volunteer's hands: it is not re-dispatched from
the pickup but waits in `needs_decision` for an operator, who sends it back to the pickup (pending
again), hands it over where the goods are now (pending from there, or assigned to a chosen
volunteer) or fails it. A delivered leg flagged for too many wrong codes waits for an operator too,
who confirms it by other proof or fails it. `TRANSITIONS` is the whole list; a move not in it is
refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from services.dispatcher.domain.errors import (
    LegFlagged,
    TransitionRefused,
    VolunteerAtLimit,
    VolunteerDeactivated,
)


class LegStatus(StrEnum):
    PENDING = "pending"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    PICKED_UP = "picked_up"
    DELIVERED = "delivered"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Handed back after pickup: the goods are with the volunteer, an operator decides what happens.
    NEEDS_DECISION = "needs_decision"


# Which waiting legs a matching round takes first: by priority in this order, then vulnerable
# recipients, then the oldest. A priority not listed comes after all of these.
PRIORITY_ORDER: tuple[str, ...] = ("critical", "urgent", "routine")
# Priorities that do not wait for the next window: taking one in starts a round at once.
PRESSING_PRIORITIES = frozenset({"critical", "urgent"})


@dataclass(frozen=True)
class Transition:
    """One allowed move: what causes it, and the events that announce it (none: no event of its own)."""

    cause: str
    events: tuple[str, ...] = ()


S = LegStatus

# Every move a leg may make, by the status it leaves. A move not listed here is refused.
TRANSITIONS: dict[LegStatus, dict[LegStatus, Transition]] = {
    S.PENDING: {
        S.OFFERED: Transition("a matching round chose a volunteer", ("leg.offered",)),
        S.ASSIGNED: Transition("an operator assigned it by hand", ("leg.assigned",)),
        S.CANCELLED: Transition("its task was cancelled"),
    },
    S.OFFERED: {
        S.PENDING: Transition(
            "the volunteer declined, or the offer expired", ("leg.offer_declined", "leg.offer_expired")
        ),
        S.ASSIGNED: Transition("the volunteer accepted, or an operator assigned by hand", ("leg.assigned",)),
        S.CANCELLED: Transition("its task was cancelled"),
    },
    S.ASSIGNED: {
        # Another holder, the goods still at the pickup (`leg.assigned` with `moved_from`).
        S.ASSIGNED: Transition("an operator moved it to another volunteer", ("leg.assigned",)),
        S.PICKED_UP: Transition("the volunteer picked it up", ("leg.picked_up",)),
        S.PENDING: Transition(
            "the volunteer handed it back, was deactivated, or an operator released it",
            ("leg.problem_reported",),
        ),
        S.CANCELLED: Transition("its task was cancelled"),
    },
    S.PICKED_UP: {
        S.DELIVERED: Transition("the volunteer handed the goods over", ("leg.delivered",)),
        S.NEEDS_DECISION: Transition(
            "the volunteer cannot carry on with the goods in hand", ("leg.problem_reported", "task.escalated")
        ),
    },
    S.NEEDS_DECISION: {
        S.PENDING: Transition(
            "an operator sent the goods back to the pickup, or handed them over for matching",
            ("leg.decided",),
        ),
        S.ASSIGNED: Transition(
            "an operator handed the goods over to a volunteer", ("leg.decided", "leg.assigned")
        ),
        S.FAILED: Transition("an operator failed it", ("leg.failed",)),
        # Its task was cancelled while it waited: returned or handed over, it goes nowhere.
        S.CANCELLED: Transition(
            "an operator took the goods back after its task was cancelled", ("leg.decided",)
        ),
    },
    S.DELIVERED: {
        # Reported again: the recipient read out the wrong code.
        S.DELIVERED: Transition("the volunteer reported the delivery again", ("leg.delivered",)),
        S.CONFIRMED: Transition(
            "the notifier confirmed it, or an operator did by other proof", ("leg.decided",)
        ),
        S.FAILED: Transition("an operator failed a flagged delivery", ("leg.failed",)),
    },
    S.CONFIRMED: {},
    S.FAILED: {},
    S.CANCELLED: {},
}

# What sends a leg back to pending, from each status it may come back from.
BACK_TO_PENDING = {status: moves[S.PENDING] for status, moves in TRANSITIONS.items() if S.PENDING in moves}
# Legs a volunteer holds and may hand back (a leg merely offered goes back through its offer), and
# where each goes: before pickup back to dispatch, after pickup to an operator's decision.
HANDED_BACK_TO: dict[LegStatus, LegStatus] = {S.ASSIGNED: S.PENDING, S.PICKED_UP: S.NEEDS_DECISION}
HANDED_BACK_FROM = frozenset(HANDED_BACK_TO)
# Legs a volunteer has not yet picked up: a cancelled task takes them back.
NOT_YET_PICKED_UP = frozenset(
    s for s, moves in TRANSITIONS.items() if S.CANCELLED in moves and s != S.NEEDS_DECISION
)
# Legs a volunteer holds until the notifier confirms them: their app lists these.
IN_HAND = frozenset({S.ASSIGNED, S.PICKED_UP, S.DELIVERED})
# Legs still waiting for a volunteer: escalation looks at these.
WAITING = frozenset({S.PENDING, S.OFFERED})
# Legs whose life is over: once the retention has passed, their personal data is erased.
ENDED = frozenset({S.CONFIRMED, S.FAILED, S.CANCELLED})


def can_move(current: LegStatus | str, target: LegStatus) -> bool:
    """Whether a leg in `current` may go to `target`."""
    return target in TRANSITIONS[LegStatus(current)]


def ensure_transition(current: LegStatus | str, target: LegStatus, *, refusal: str) -> None:
    """Refuse (TransitionRefused, with `refusal` formatted with the status) a move not in TRANSITIONS."""
    if not can_move(current, target):
        raise TransitionRefused(refusal.format(status=current))


def can_pick_up(current: LegStatus | str) -> bool:
    """False when the pickup is already recorded (a repeat report changes nothing); refuses other moves."""
    if current == S.PICKED_UP:
        return False
    ensure_transition(current, S.PICKED_UP, refusal="The leg is {status}, not assigned.")
    return True


def can_deliver(current: LegStatus | str, *, flagged_at: datetime | None) -> bool:
    """Whether the report moves the leg to delivered (False: already delivered, reported again)."""
    if flagged_at is not None:
        raise LegFlagged(
            "Too many wrong confirmation codes were sent for this leg: it takes no more reports until "
            "an operator has looked into it."
        )
    if current == S.ASSIGNED:
        raise TransitionRefused("The leg is assigned; report the pickup first.")
    ensure_transition(current, S.DELIVERED, refusal="The leg is {status}; it takes no delivery report.")
    return current != S.DELIVERED


def hand_back(current: LegStatus | str) -> LegStatus:
    """The volunteer gives up a leg in hand: before pickup it is pending again (and not offered to
    them again); after pickup it needs an operator's decision."""
    target = HANDED_BACK_TO.get(LegStatus(current)) if current in set(LegStatus) else None
    if target is None or not can_move(current, target):
        raise TransitionRefused(f"The leg is {current}; only a leg in hand can be handed back.")
    return target


# --- an operator's decisions

# What an operator may decide, by the status the leg waits in.
DECISIONS: dict[LegStatus, tuple[str, ...]] = {
    S.NEEDS_DECISION: ("return_to_pickup", "hand_over", "fail"),
    S.DELIVERED: ("confirm", "fail"),
}


@dataclass(frozen=True)
class Decision:
    """Where an operator's decision takes the leg: its new status, and whether the pickup moves to
    where the goods are now."""

    status: LegStatus
    pickup_moves: bool = False


def decide(
    current: LegStatus | str,
    action: str,
    *,
    flagged_at: datetime | None,
    to_volunteer: bool,
    task_cancelled: bool = False,
) -> Decision:
    """An operator's decision on a leg waiting for one (TransitionRefused for any other leg).

    - `needs_decision`: `return_to_pickup` (the volunteer brings the goods back; pending again from
      the pickup), `hand_over` (the goods change hands where they are: assigned to the chosen
      volunteer, or pending for matching from there), or `fail`.
    - delivered and flagged for too many wrong codes: `confirm` (by other proof) or `fail`.

    Once the task is cancelled, a leg returned or handed over goes nowhere: it is cancelled.
    """
    status = LegStatus(current) if current in set(LegStatus) else None
    allowed = DECISIONS.get(status) if status is not None else None
    if status == S.DELIVERED and flagged_at is None:
        allowed = None
    if allowed is None:
        raise TransitionRefused(
            f"The leg is {current}; only a leg handed back after pickup, or a flagged delivery, "
            "waits for an operator's decision."
        )
    if action not in allowed:
        raise TransitionRefused(f"The leg is {current}: the decision must be one of {', '.join(allowed)}.")
    if action == "fail":
        target, moves = S.FAILED, False
    elif action == "confirm":
        target, moves = S.CONFIRMED, False
    elif action == "hand_over":
        target, moves = (S.ASSIGNED if to_volunteer else S.PENDING), True
    else:
        target, moves = S.PENDING, False
    if task_cancelled and target in (S.PENDING, S.ASSIGNED):
        target, moves = S.CANCELLED, False
    ensure_transition(current, target, refusal="The leg is {status}.")
    return Decision(target, pickup_moves=moves)


def release(current: LegStatus | str) -> LegStatus:
    """An operator takes an assigned leg, not yet picked up, from its volunteer: it is pending again."""
    ensure_movable(current)
    ensure_transition(current, S.PENDING, refusal="The leg is {status} and cannot be released.")
    return S.PENDING


class Carrier(Protocol):
    """What `assign` reads of a volunteer."""

    @property
    def active_legs(self) -> int: ...
    @property
    def max_active_legs(self) -> int: ...
    @property
    def deactivated_at(self) -> datetime | None: ...


@dataclass
class Load:
    """A volunteer's load as `assign` and `move` read it, counted up as several legs go to them at once
    (a route accepted, legs moved together): each is checked against the legs before it."""

    active_legs: int
    max_active_legs: int
    deactivated_at: datetime | None


def already_assigned_to(current: LegStatus | str, *, holder: uuid.UUID | None, volunteer: uuid.UUID) -> bool:
    """The leg is this volunteer's already (assigning it again changes nothing)."""
    return holder == volunteer and current in (S.ASSIGNED, S.PICKED_UP, S.DELIVERED, S.CONFIRMED)


def ensure_not_taken(current: LegStatus | str) -> None:
    """Refuse (TransitionRefused) to assign a leg someone has taken already, or that is over.

    A leg waiting for an operator's decision is handed over by that decision (`decide`), not here.
    """
    if current == S.NEEDS_DECISION:
        raise TransitionRefused(
            "The leg was handed back after pickup and needs an operator's decision (hand_over)."
        )
    if current == S.ASSIGNED:
        raise TransitionRefused(
            "The leg is assigned; only a leg not yet taken can be assigned (an operator may move it)."
        )
    ensure_transition(
        current, S.ASSIGNED, refusal="The leg is {status}; only a leg not yet taken can be assigned."
    )


def ensure_movable(current: LegStatus | str) -> None:
    """Refuse (TransitionRefused) to move a leg that is not assigned, or whose goods were picked up."""
    if current != S.ASSIGNED:
        raise TransitionRefused(
            f"The leg is {current}; only a leg assigned and not yet picked up can be moved."
        )
    ensure_transition(current, S.ASSIGNED, refusal="The leg is {status} and cannot be moved.")


def move(current: LegStatus | str, volunteer: Carrier) -> LegStatus:
    """An operator gives an assigned leg, not yet picked up, to another volunteer.

    The new holder must be active and below their limit, as for any assignment.
    """
    ensure_movable(current)
    ensure_may_carry(volunteer, by_hand=True)
    return S.ASSIGNED


def assign(current: LegStatus | str, volunteer: Carrier, *, by_hand: bool) -> LegStatus:
    """The one rule for giving a leg to a volunteer, whether they accept its offer or an operator chooses.

    The leg must not be taken yet, the volunteer active and below their limit.
    """
    ensure_not_taken(current)
    ensure_may_carry(volunteer, by_hand=by_hand)
    return S.ASSIGNED


def ensure_may_carry(volunteer: Carrier, *, by_hand: bool) -> None:
    """Refuse a volunteer who is deactivated or already at their limit of legs."""
    if volunteer.deactivated_at is not None:
        raise VolunteerDeactivated("The volunteer is deactivated.")
    if volunteer.active_legs >= volunteer.max_active_legs:
        raise VolunteerAtLimit(
            "The volunteer already carries as many legs as their limit allows."
            if by_hand
            else "You already carry as many legs as your limit allows."
        )
