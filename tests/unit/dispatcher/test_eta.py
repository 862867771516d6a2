"""Estimates of a leg in hand and when a leg escalates on its own: the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.dispatcher.domain import eta
from shared.geo import haversine_m

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SPEEDS = eta.Speeds(
    kmh={"foot": 4.5, "bicycle": 12.0, "ebike": 18.0, "car": 25.0, "van": 25.0}, road_factor=1.3
)
HERE = (29.87, 121.55)
PICKUP = (29.88, 121.55)  # about 1.1 km north
DROPOFF = (29.90, 121.55)  # about 2.2 km further north
LIMITS = {"pending": 1800.0, "offered": 900.0, "assigned": 2700.0, "picked_up": 3600.0}


def minutes(start: tuple[float, float], end: tuple[float, float], kmh: float) -> float:
    return haversine_m(*start, *end) * 1.3 / (kmh / 3.6) / 60


def test_travel_time_is_road_distance_at_the_vehicles_speed() -> None:
    walk = SPEEDS.travel_s(HERE, PICKUP, "foot")
    assert walk == pytest.approx(minutes(HERE, PICKUP, 4.5) * 60)
    assert SPEEDS.travel_s(HERE, PICKUP, "car") == pytest.approx(walk * 4.5 / 25.0)


def test_an_unknown_vehicle_goes_at_the_slowest_speed() -> None:
    assert SPEEDS.travel_s(HERE, PICKUP, "hovercraft") == SPEEDS.travel_s(HERE, PICKUP, "foot")


def test_assigned_leg_is_estimated_to_the_pickup_then_on_to_the_dropoff() -> None:
    estimate = eta.estimate(
        status="assigned",
        position=HERE,
        pickup=PICKUP,
        dropoff=DROPOFF,
        vehicle="bicycle",
        ready_at=None,
        now=NOW,
        speeds=SPEEDS,
    )
    assert estimate is not None and estimate.pickup_at is not None
    to_pickup = (estimate.pickup_at - NOW).total_seconds() / 60
    assert to_pickup == pytest.approx(minutes(HERE, PICKUP, 12.0))
    onwards = (estimate.dropoff_at - estimate.pickup_at).total_seconds() / 60
    assert onwards == pytest.approx(minutes(PICKUP, DROPOFF, 12.0))


def test_pickup_is_never_estimated_before_the_goods_are_ready() -> None:
    ready = NOW + timedelta(hours=1)
    estimate = eta.estimate(
        status="assigned",
        position=HERE,
        pickup=PICKUP,
        dropoff=DROPOFF,
        vehicle="car",
        ready_at=ready,
        now=NOW,
        speeds=SPEEDS,
    )
    assert estimate is not None and estimate.pickup_at == ready
    assert estimate.dropoff_at > ready


def test_picked_up_leg_goes_straight_to_the_dropoff() -> None:
    estimate = eta.estimate(
        status="picked_up",
        position=PICKUP,
        pickup=PICKUP,
        dropoff=DROPOFF,
        vehicle="foot",
        ready_at=None,
        now=NOW,
        speeds=SPEEDS,
    )
    assert estimate is not None and estimate.pickup_at is None
    assert (estimate.dropoff_at - NOW).total_seconds() / 60 == pytest.approx(minutes(PICKUP, DROPOFF, 4.5))


@pytest.mark.parametrize("status", ["pending", "offered", "delivered"])
def test_only_legs_under_way_are_estimated(status: str) -> None:
    assert (
        eta.estimate(
            status=status,
            position=HERE,
            pickup=PICKUP,
            dropoff=DROPOFF,
            vehicle="foot",
            ready_at=None,
            now=NOW,
            speeds=SPEEDS,
        )
        is None
    )


def test_no_position_no_estimate() -> None:
    assert (
        eta.estimate(
            status="assigned",
            position=None,
            pickup=PICKUP,
            dropoff=DROPOFF,
            vehicle="foot",
            ready_at=None,
            now=NOW,
            speeds=SPEEDS,
        )
        is None
    )


def test_small_moves_of_the_estimate_are_not_published_but_two_minutes_are() -> None:
    before = eta.Eta(NOW + timedelta(minutes=5), NOW + timedelta(minutes=20))
    wobble = eta.Eta(NOW + timedelta(minutes=6), NOW + timedelta(minutes=21))
    moved = eta.Eta(NOW + timedelta(minutes=5), NOW + timedelta(minutes=22))
    common: dict[str, Any] = {"late_before": False, "deliver_by": None, "min_change_s": 120.0}
    assert not eta.worth_publishing(before=before, after=wobble, **common)
    assert eta.worth_publishing(before=before, after=moved, **common)
    assert eta.worth_publishing(before=None, after=wobble, **common), "the first estimate is news"


def test_slipping_past_the_promised_time_is_published_however_small_the_move() -> None:
    deliver_by = NOW + timedelta(minutes=20, seconds=30)
    before = eta.Eta(None, NOW + timedelta(minutes=20))
    after = eta.Eta(None, NOW + timedelta(minutes=21))
    assert eta.is_late(after.dropoff_at, deliver_by) and not eta.is_late(before.dropoff_at, deliver_by)
    assert eta.worth_publishing(
        before=before, after=after, late_before=False, deliver_by=deliver_by, min_change_s=120.0
    )
    assert not eta.worth_publishing(
        before=after, after=after, late_before=True, deliver_by=deliver_by, min_change_s=120.0
    ), "still late: not news"


def test_picking_up_is_news_even_when_the_dropoff_estimate_holds() -> None:
    before = eta.Eta(NOW, NOW + timedelta(minutes=20))
    after = eta.Eta(None, NOW + timedelta(minutes=20))
    assert eta.worth_publishing(
        before=before, after=after, late_before=False, deliver_by=None, min_change_s=120
    )


@pytest.mark.parametrize("status", ["pending", "offered", "assigned", "picked_up"])
def test_a_leg_too_long_in_any_status_escalates_with_that_status_in_the_reason(status: str) -> None:
    limit = LIMITS[status]
    common: dict[str, Any] = {
        "dropoff_eta": None,
        "deliver_by": None,
        "now": NOW,
        "wait_limits_s": LIMITS,
        "status": status,
    }
    assert eta.escalation_reasons(status_since=NOW - timedelta(seconds=limit - 1), **common) == []
    assert eta.escalation_reasons(status_since=NOW - timedelta(seconds=limit + 1), **common) == [
        f"waited_too_long_{status}"
    ]


def test_a_leg_whose_estimate_is_past_deliver_by_will_miss_it() -> None:
    deliver_by = NOW + timedelta(minutes=30)
    common: dict[str, Any] = {"status": "picked_up", "status_since": NOW, "now": NOW, "wait_limits_s": LIMITS}
    assert (
        eta.escalation_reasons(dropoff_eta=NOW + timedelta(minutes=29), deliver_by=deliver_by, **common) == []
    )
    assert eta.escalation_reasons(
        dropoff_eta=NOW + timedelta(minutes=31), deliver_by=deliver_by, **common
    ) == [eta.WILL_MISS_DELIVER_BY]


def test_a_stalled_leg_whose_estimate_is_behind_us_counts_from_now() -> None:
    deliver_by = NOW - timedelta(minutes=1)
    reasons = eta.escalation_reasons(
        status="assigned",
        status_since=NOW,
        dropoff_eta=NOW - timedelta(minutes=10),
        deliver_by=deliver_by,
        now=NOW,
        wait_limits_s=LIMITS,
    )
    assert reasons == [eta.WILL_MISS_DELIVER_BY]


def test_delivered_legs_never_escalate() -> None:
    assert (
        eta.escalation_reasons(
            status="delivered",
            status_since=NOW - timedelta(days=1),
            dropoff_eta=None,
            deliver_by=NOW - timedelta(hours=1),
            now=NOW,
            wait_limits_s=LIMITS,
        )
        == []
    )


def test_every_reason_is_named_in_the_list_of_reasons() -> None:
    assert set(eta.ESCALATION_REASONS) == {
        "waited_too_long_pending",
        "waited_too_long_offered",
        "waited_too_long_assigned",
        "waited_too_long_picked_up",
        "will_miss_deliver_by",
    }
