"""A leg in hand: when it will be picked up and dropped off, and when it must be raised to a human.

No IO. Times are estimated from where the volunteer last was, by straight line stretched to the
road distance, at their vehicle's speed; the service layer refreshes them as fixes arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.dispatcher.domain.leg import LegStatus
from shared.geo import haversine_m

# A leg whose drop-off estimate is past its `deliver_by` (or, still unplaced, whose deadline has passed).
WILL_MISS_DELIVER_BY = "will_miss_deliver_by"

# The statuses a leg may wait too long in; each has its own limit and its own reason.
WAITING_STATUSES: tuple[LegStatus, ...] = (
    LegStatus.PENDING,
    LegStatus.OFFERED,
    LegStatus.ASSIGNED,
    LegStatus.PICKED_UP,
)


def waited_too_long(status: str) -> str:
    """The escalation reason of a leg that waited too long in `status`: `waited_too_long_<status>`."""
    return f"waited_too_long_{status}"


ESCALATION_REASONS: tuple[str, ...] = (*(waited_too_long(s) for s in WAITING_STATUSES), WILL_MISS_DELIVER_BY)

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Speeds:
    """How fast each vehicle goes in km/h, and how much longer roads are than the straight line."""

    kmh: Mapping[str, float]
    road_factor: float

    def travel_s(self, start: Point, end: Point, vehicle: str) -> float:
        """Seconds from `start` to `end` by `vehicle` (an unknown vehicle goes on foot: the slowest)."""
        speed_kmh = self.kmh.get(vehicle) or min(self.kmh.values())
        return haversine_m(*start, *end) * self.road_factor / (speed_kmh / 3.6)


@dataclass(frozen=True, slots=True)
class Eta:
    """When the leg should be picked up (None: it has been) and dropped off."""

    pickup_at: datetime | None
    dropoff_at: datetime


def estimate(
    *,
    status: str,
    position: Point | None,
    pickup: Point,
    dropoff: Point,
    vehicle: str,
    ready_at: datetime | None,
    now: datetime,
    speeds: Speeds,
) -> Eta | None:
    """The ETA of a leg in hand from the volunteer's `position`; None when there is nothing to go on.

    Assigned: to the pickup (not before the goods are ready), then on to the drop-off. Picked up:
    straight to the drop-off.
    """
    if position is None:
        return None
    if status == LegStatus.ASSIGNED:
        pickup_at = now + timedelta(seconds=speeds.travel_s(position, pickup, vehicle))
        if ready_at is not None and ready_at > pickup_at:
            pickup_at = ready_at
        return Eta(pickup_at, pickup_at + timedelta(seconds=speeds.travel_s(pickup, dropoff, vehicle)))
    if status == LegStatus.PICKED_UP:
        return Eta(None, now + timedelta(seconds=speeds.travel_s(position, dropoff, vehicle)))
    return None


def is_late(dropoff_at: datetime | None, deliver_by: datetime | None) -> bool:
    """Whether a drop-off estimate is past the time promised."""
    return dropoff_at is not None and deliver_by is not None and dropoff_at > deliver_by


def worth_publishing(
    *,
    before: Eta | None,
    after: Eta,
    late_before: bool,
    deliver_by: datetime | None,
    min_change_s: float,
) -> bool:
    """Whether a new estimate is news: the first one, a move of `min_change_s` or more, or a slip
    past (or back within) the promised time. Smaller wobbles of every fix are kept quiet."""
    if before is None or is_late(after.dropoff_at, deliver_by) != late_before:
        return True
    if (before.pickup_at is None) != (after.pickup_at is None):
        return True
    moved = [abs((after.dropoff_at - before.dropoff_at).total_seconds())]
    if before.pickup_at is not None and after.pickup_at is not None:
        moved.append(abs((after.pickup_at - before.pickup_at).total_seconds()))
    return max(moved) >= min_change_s


def escalation_reasons(
    *,
    status: str,
    status_since: datetime,
    dropoff_eta: datetime | None,
    deliver_by: datetime | None,
    now: datetime,
    wait_limits_s: Mapping[str, float],
) -> list[str]:
    """Why a leg must be raised to a human now (none: it may go on).

    A leg waited too long when it has been in its status longer than that status's limit. It will
    miss its `deliver_by` when its drop-off estimate is past it; an estimate already behind us (a
    phone gone quiet) or no estimate at all counts as "now", so a stalled leg still escalates once
    the time has passed.
    """
    reasons: list[str] = []
    limit = wait_limits_s.get(status)
    if limit is not None and (now - status_since).total_seconds() > limit:
        reasons.append(waited_too_long(status))
    if status in WAITING_STATUSES and deliver_by is not None:
        projected = max(dropoff_eta, now) if dropoff_eta is not None else now
        if projected > deliver_by:
            reasons.append(WILL_MISS_DELIVER_BY)
    return reasons


@dataclass(frozen=True, slots=True)
class EtaPolicy:
    """How estimates are made, and how far one must move to be published."""

    speeds: Speeds
    min_change_s: float
