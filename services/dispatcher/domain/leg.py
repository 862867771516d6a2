"""A leg's life in the dispatcher: its statuses, the moves between them and what causes each. No IO here.

    pending -> offered -> assigned -> picked_up -> delivered -> confirmed

and the side exits: an offer declined or expired sends the leg back to pending (without that
volunteer); a problem reported (or the volunteer deactivated) sends a leg in hand back to pending;
a cancelled task takes every leg not yet picked up. An operator may assign a pending or offered leg
by hand: the same `assign` as accepting an offer; and may move an assigned leg, not yet picked up,
to another volunteer (`move`), or release it to pending. `TRANSITIONS` is the whole list; a move
not in it is refused.
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


# Which waiting legs a matching round takes first: by priority in this order, then vulnerable
# recipients, then the oldest. A priority not listed comes after all of these.
PRIORITY_ORDER: tuple[str, ...] = ("critical", "urgent", "routine")


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
        S.PENDING: Transition("the volunteer cannot carry on", ("leg.problem_reported",)),
    },
    S.DELIVERED: {
        # Reported again: the recipient read out the wrong code.
        S.DELIVERED: Transition("the volunteer reported the delivery again", ("leg.delivered",)),
        S.CONFIRMED: Transition("the notifier confirmed it"),
    },
    S.CONFIRMED: {},
    S.FAILED: {},
    S.CANCELLED: {},
}

# What sends a leg back to pending, from each status it may come back from.
BACK_TO_PENDING = {status: moves[S.PENDING] for status, moves in TRANSITIONS.items() if S.PENDING in moves}
# Legs a volunteer holds and may hand back (a leg merely offered goes back through its offer).
HANDED_BACK_FROM = frozenset({S.ASSIGNED, S.PICKED_UP})
# Legs a volunteer has not yet picked up: a cancelled task takes them back.
NOT_YET_PICKED_UP = frozenset(s for s, moves in TRANSITIONS.items() if S.CANCELLED in moves)
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
    ensure_transition(current, S.DELIVERED, refusal="The leg is {status}; report the pickup first.")
    return current != S.DELIVERED


def hand_back(current: LegStatus | str) -> LegStatus:
    """The volunteer gives up a leg in hand: it is pending again (and not offered to them again)."""
    if current not in HANDED_BACK_FROM or not can_move(current, S.PENDING):
        raise TransitionRefused(f"The leg is {current}; only a leg in hand can be handed back.")
    return S.PENDING


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


def already_assigned_to(current: LegStatus | str, *, holder: uuid.UUID | None, volunteer: uuid.UUID) -> bool:
    """The leg is this volunteer's already (assigning it again changes nothing)."""
    return holder == volunteer and current in (S.ASSIGNED, S.PICKED_UP, S.DELIVERED, S.CONFIRMED)


def ensure_not_taken(current: LegStatus | str) -> None:
    """Refuse (TransitionRefused) to assign a leg someone has taken already, or that is over."""
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
    _ensure_may_carry(volunteer, by_hand=True)
    return S.ASSIGNED


def assign(current: LegStatus | str, volunteer: Carrier, *, by_hand: bool) -> LegStatus:
    """The one rule for giving a leg to a volunteer, whether they accept its offer or an operator chooses.

    The leg must not be taken yet, the volunteer active and below their limit.
    """
    ensure_not_taken(current)
    _ensure_may_carry(volunteer, by_hand=by_hand)
    return S.ASSIGNED


def _ensure_may_carry(volunteer: Carrier, *, by_hand: bool) -> None:
    """The volunteer is active and below their limit."""
    if volunteer.deactivated_at is not None:
        raise VolunteerDeactivated("The volunteer is deactivated.")
    if volunteer.active_legs >= volunteer.max_active_legs:
        raise VolunteerAtLimit(
            "The volunteer already carries as many legs as their limit allows."
            if by_hand
            else "You already carry as many legs as your limit allows."
        )
