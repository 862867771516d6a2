"""A leg's lifecycle and an offer's, as the domain decides them: no database, no broker."""

from __future__ import annotations

import typing
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.domain import leg as lifecycle
from services.dispatcher.domain.errors import (
    LegFlagged,
    OfferClosed,
    TransitionRefused,
    VolunteerAtLimit,
    VolunteerDeactivated,
)
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.domain.offer import OfferStatus, ensure_open, expiry, has_lapsed
from services.dispatcher.entrypoints.schemas import LegStatusName

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Carrier:
    active_legs: int = 0
    max_active_legs: int = 2
    deactivated_at: datetime | None = None


def test_only_an_offer_declined_or_expired_a_problem_before_pickup_or_an_operator_sends_a_leg_back() -> None:
    assert set(lifecycle.BACK_TO_PENDING) == {
        LegStatus.OFFERED,
        LegStatus.ASSIGNED,
        LegStatus.NEEDS_DECISION,
    }
    events = {event for move in lifecycle.BACK_TO_PENDING.values() for event in move.events}
    assert events == {"leg.offer_declined", "leg.offer_expired", "leg.problem_reported", "leg.decided"}


def test_a_cancelled_task_takes_back_only_legs_not_yet_picked_up() -> None:
    assert {LegStatus.PENDING, LegStatus.OFFERED, LegStatus.ASSIGNED} == lifecycle.NOT_YET_PICKED_UP


def test_the_published_leg_status_lists_every_status() -> None:
    assert set(typing.get_args(LegStatusName)) == set(LegStatus)


def test_accepting_an_offer_past_its_time_is_refused_as_expired() -> None:
    expires_at = expiry(offered_at=NOW, ttl=timedelta(seconds=60))
    ensure_open(status=OfferStatus.LIVE, expires_at=expires_at, now=NOW + timedelta(seconds=59))
    assert has_lapsed(status=OfferStatus.LIVE, expires_at=expires_at, now=expires_at)
    with pytest.raises(OfferClosed, match=r"no longer open \(expired\)"):
        ensure_open(status=OfferStatus.LIVE, expires_at=expires_at, now=expires_at)


@pytest.mark.parametrize("status", [OfferStatus.DECLINED, OfferStatus.WITHDRAWN, OfferStatus.ACCEPTED])
def test_accepting_a_decided_offer_is_refused_with_what_became_of_it(status: OfferStatus) -> None:
    with pytest.raises(OfferClosed, match=rf"no longer open \({status}\)"):
        ensure_open(status=status, expires_at=NOW + timedelta(minutes=1), now=NOW)


def test_a_volunteer_at_their_limit_takes_no_more_legs_whichever_way_assigned() -> None:
    full = Carrier(active_legs=2, max_active_legs=2)
    with pytest.raises(VolunteerAtLimit, match="You already carry"):
        lifecycle.assign(LegStatus.OFFERED, full, by_hand=False)
    with pytest.raises(VolunteerAtLimit, match="The volunteer already carries"):
        lifecycle.assign(LegStatus.PENDING, full, by_hand=True)
    assert lifecycle.assign(LegStatus.OFFERED, Carrier(active_legs=1), by_hand=False) is LegStatus.ASSIGNED


def test_a_deactivated_volunteer_takes_no_leg() -> None:
    with pytest.raises(VolunteerDeactivated):
        lifecycle.assign(LegStatus.PENDING, Carrier(deactivated_at=NOW), by_hand=True)


@pytest.mark.parametrize("status", [LegStatus.ASSIGNED, LegStatus.PICKED_UP, LegStatus.CANCELLED])
def test_a_leg_already_taken_or_over_cannot_be_assigned(status: LegStatus) -> None:
    with pytest.raises(TransitionRefused, match=f"The leg is {status}; only a leg not yet taken"):
        lifecycle.assign(status, Carrier(), by_hand=True)


def test_a_repeated_pickup_changes_nothing_and_a_pickup_before_assignment_is_refused() -> None:
    assert lifecycle.can_pick_up(LegStatus.ASSIGNED)
    assert not lifecycle.can_pick_up(LegStatus.PICKED_UP)
    with pytest.raises(TransitionRefused, match=r"The leg is delivered, not assigned\."):
        lifecycle.can_pick_up(LegStatus.DELIVERED)


def test_a_flagged_leg_takes_no_delivery_report_and_a_delivered_one_may_be_reported_again() -> None:
    with pytest.raises(LegFlagged):
        lifecycle.can_deliver(LegStatus.DELIVERED, flagged_at=NOW)
    assert lifecycle.can_deliver(LegStatus.PICKED_UP, flagged_at=None)
    assert not lifecycle.can_deliver(LegStatus.DELIVERED, flagged_at=None)
    with pytest.raises(TransitionRefused, match="report the pickup first"):
        lifecycle.can_deliver(LegStatus.ASSIGNED, flagged_at=None)
    # A report arriving after the recipient's code confirmed the leg is not told to report a pickup.
    with pytest.raises(TransitionRefused, match="The leg is confirmed; it takes no delivery report"):
        lifecycle.can_deliver(LegStatus.CONFIRMED, flagged_at=None)


@pytest.mark.parametrize("status", [LegStatus.OFFERED, LegStatus.DELIVERED, LegStatus.PENDING])
def test_only_a_leg_in_hand_can_be_handed_back(status: LegStatus) -> None:
    with pytest.raises(TransitionRefused, match="only a leg in hand"):
        lifecycle.hand_back(status)


def test_a_leg_handed_back_before_pickup_is_pending_again_and_after_pickup_needs_a_decision() -> None:
    assert lifecycle.hand_back(LegStatus.ASSIGNED) is LegStatus.PENDING
    assert lifecycle.hand_back(LegStatus.PICKED_UP) is LegStatus.NEEDS_DECISION
    assert not lifecycle.can_move(LegStatus.PICKED_UP, LegStatus.PENDING)
    with pytest.raises(TransitionRefused, match="only a leg in hand"):
        lifecycle.hand_back(LegStatus.NEEDS_DECISION)


@pytest.mark.parametrize(
    ("action", "to_volunteer", "status", "moves"),
    [
        ("return_to_pickup", False, LegStatus.PENDING, False),
        ("hand_over", False, LegStatus.PENDING, True),
        ("hand_over", True, LegStatus.ASSIGNED, True),
        ("fail", False, LegStatus.FAILED, False),
    ],
)
def test_an_operator_decides_a_leg_handed_back_after_pickup(
    action: str, to_volunteer: bool, status: LegStatus, moves: bool
) -> None:
    decision = lifecycle.decide(LegStatus.NEEDS_DECISION, action, flagged_at=None, to_volunteer=to_volunteer)
    assert decision == lifecycle.Decision(status, pickup_moves=moves)


@pytest.mark.parametrize("action", ["return_to_pickup", "hand_over"])
def test_once_its_task_is_cancelled_a_leg_returned_or_handed_over_is_cancelled(action: str) -> None:
    decision = lifecycle.decide(
        LegStatus.NEEDS_DECISION, action, flagged_at=None, to_volunteer=True, task_cancelled=True
    )
    assert decision == lifecycle.Decision(LegStatus.CANCELLED)
    failed = lifecycle.decide(
        LegStatus.NEEDS_DECISION, "fail", flagged_at=None, to_volunteer=False, task_cancelled=True
    )
    assert failed.status is LegStatus.FAILED


def test_a_flagged_delivery_is_confirmed_or_failed_and_nothing_else() -> None:
    assert lifecycle.decide(LegStatus.DELIVERED, "confirm", flagged_at=NOW, to_volunteer=False).status == (
        LegStatus.CONFIRMED
    )
    assert lifecycle.decide(LegStatus.DELIVERED, "fail", flagged_at=NOW, to_volunteer=False).status == (
        LegStatus.FAILED
    )
    with pytest.raises(TransitionRefused, match="one of confirm, fail"):
        lifecycle.decide(LegStatus.DELIVERED, "hand_over", flagged_at=NOW, to_volunteer=False)
    with pytest.raises(TransitionRefused, match="waits for an operator"):
        lifecycle.decide(LegStatus.DELIVERED, "confirm", flagged_at=None, to_volunteer=False)
    with pytest.raises(TransitionRefused, match="one of return_to_pickup"):
        lifecycle.decide(LegStatus.NEEDS_DECISION, "confirm", flagged_at=None, to_volunteer=False)


@pytest.mark.parametrize("status", [LegStatus.PENDING, LegStatus.PICKED_UP, LegStatus.FAILED])
def test_a_leg_not_waiting_for_a_decision_takes_none(status: LegStatus) -> None:
    with pytest.raises(TransitionRefused, match="waits for an operator"):
        lifecycle.decide(status, "fail", flagged_at=None, to_volunteer=False)


def test_a_leg_waiting_for_a_decision_is_not_assigned_by_hand() -> None:
    with pytest.raises(TransitionRefused, match="needs an operator's decision"):
        lifecycle.assign(LegStatus.NEEDS_DECISION, Carrier(), by_hand=True)


def test_assigning_a_leg_again_to_its_holder_changes_nothing() -> None:
    holder = uuid.uuid4()
    assert lifecycle.already_assigned_to(LegStatus.PICKED_UP, holder=holder, volunteer=holder)
    assert not lifecycle.already_assigned_to(LegStatus.PICKED_UP, holder=holder, volunteer=uuid.uuid4())
