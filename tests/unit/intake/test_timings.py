"""Which dispatch timings a leg completes as it moves, and that nothing counts twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.intake.domain.timings import timings_completed

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def observed(before: dict[str, str], reached: str, seconds: float) -> dict[str, float]:
    return {
        o.timing.name: o.seconds
        for o in timings_completed(
            transitions_before=before, reached=reached, at=at(seconds), submitted_at=T0
        )
    }


def test_each_first_transition_completes_its_timing() -> None:
    assert observed({"pending": T0.isoformat()}, "offered", 12) == {"submission_to_offer": 12}
    history = {"pending": T0.isoformat(), "offered": at(12).isoformat()}
    assert observed(history, "assigned", 40) == {"offer_to_assignment": 28}
    history |= {"assigned": at(40).isoformat(), "picked_up": at(100).isoformat()}
    assert observed(history, "picked_up", 100) == {}
    history |= {"delivered": at(500).isoformat()}
    assert observed(history, "confirmed", 520) == {"assignment_to_confirmation": 480}


def test_a_second_offer_or_a_reassignment_does_not_count_again() -> None:
    offered_before = {"pending": at(30).isoformat(), "offered": at(12).isoformat()}
    assert observed(offered_before, "offered", 70) == {}
    assigned_before = {
        "pending": at(90).isoformat(),
        "offered": at(95).isoformat(),
        "assigned": at(50).isoformat(),
    }
    assert observed(assigned_before, "assigned", 120) == {}


def test_an_assignment_by_hand_without_an_offer_has_no_offer_timing() -> None:
    assert observed({"pending": T0.isoformat()}, "assigned", 300) == {}


def test_clock_skew_never_makes_a_timing_negative() -> None:
    assert observed({"pending": T0.isoformat()}, "offered", -0.4) == {"submission_to_offer": 0.0}
