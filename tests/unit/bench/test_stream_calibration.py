"""The stream benchmark's load points: the arrival rate found puts greedy at the utilisation named."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import dispatch_stream
from bench.dispatch_stream import Outcome


def saturating(rate: float) -> float:
    """Utilisation against the arrival rate, shaped as the benchmark's own stream measured it: half
    at 0.05 legs/s, 0.95 at 0.083, and flat beyond (0.993 at 0.12, 0.999 at 0.19)."""
    return min(0.999, 1.0 - math.exp(-((rate / 0.0564) ** 2.82)))


@pytest.fixture
def rates_tried(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Greedy's simulation replaced by the curve above; the rates it was asked, in order."""
    tried: list[float] = []

    def arrivals(rate: float, duration_s: float, *, seed: int) -> float:
        return rate

    def simulate(policy: str, pool: Any, rate: float, **_: Any) -> Outcome:
        assert policy == "greedy"
        tried.append(rate)
        return Outcome([], [], 0, saturating(rate), 0.0)

    monkeypatch.setattr(dispatch_stream, "make_arrivals", arrivals)
    monkeypatch.setattr(dispatch_stream, "simulate", simulate)
    return tried


POOL: list[Any] = [object()] * 200  # only its size is read: the first guess


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_each_load_point_is_found_within_its_tolerance_from_a_saturated_first_guess(
    rates_tried: list[float], target: float
) -> None:
    rate, greedy = dispatch_stream._calibrate(target, POOL, duration_s=1.0, warmup_s=0.0, seed=1)
    assert abs(greedy.utilisation - target) <= 0.01
    assert greedy.utilisation == saturating(rate)
    assert len(rates_tried) < 10  # found, not the closest of the tries allowed


def test_the_higher_load_point_starts_from_the_one_found_below_it(rates_tried: list[float]) -> None:
    below = 0.0497
    _, greedy = dispatch_stream._calibrate(
        0.95,
        POOL,
        duration_s=1.0,
        warmup_s=0.0,
        seed=1,
        below=(below, saturating(below)),
    )
    assert abs(greedy.utilisation - 0.95) <= 0.01
    assert rates_tried[0] == pytest.approx(below * 0.95 / saturating(below))
    assert len(rates_tried) <= 6
