"""The three dispatch timings ops watch, and which of them a leg's new status completes. No IO here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class DispatchTiming:
    """The time from `start` (a task's submission or a leg status) until the leg first reaches `end`."""

    name: str
    label: str
    start: str
    end: str


SUBMITTED = "submitted"

DISPATCH_TIMINGS = (
    DispatchTiming("submission_to_offer", "Submission → offer", start=SUBMITTED, end="offered"),
    DispatchTiming("offer_to_assignment", "Offer → assignment", start="offered", end="assigned"),
    DispatchTiming(
        "assignment_to_confirmation", "Assignment → confirmation", start="assigned", end="confirmed"
    ),
)


@dataclass(frozen=True)
class TimingObservation:
    timing: DispatchTiming
    seconds: float


def timings_completed(
    *, transitions_before: Mapping[str, str], reached: str, at: datetime, submitted_at: datetime
) -> list[TimingObservation]:
    """The timings a leg completes by reaching `reached` at `at`, given its transitions until now.

    Only a status the leg has never been in counts, so a re-offer, a reassignment after a hand-back
    or a replayed event never counts twice. A timing whose start the leg never passed through (an
    assignment by hand without an offer) is not observed. Clock skew between services never makes
    a timing negative.
    """
    if reached in transitions_before:
        return []
    observed = []
    for timing in DISPATCH_TIMINGS:
        if timing.end != reached:
            continue
        if timing.start == SUBMITTED:
            started: datetime | None = submitted_at
        else:
            raw = transitions_before.get(timing.start)
            started = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        if started is not None:
            observed.append(TimingObservation(timing, max(0.0, (at - started).total_seconds())))
    return observed
