"""The latency benchmark's breakdown of a leg's way to its offer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.dispatch_latency import stage_figures

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_each_stage_is_timed_and_a_leg_sent_before_a_round_it_missed_is_counted() -> None:
    submitted = {"a": at(0), "b": at(100)}
    sent = {"a": at(10), "b": at(120)}
    # Rounds start at 200 and 700 ms: a's is the first after it was sent; b missed the one at 200.
    started = {"a": at(200), "b": at(700)}
    offered = {"a": at(250), "b": at(760)}
    figures = stage_figures(submitted, sent, offered, started)
    assert figures["relay"] == {"p50_ms": 20.0, "p95_ms": 20.0}
    assert figures["to_round"] == {"p50_ms": 580.0, "p95_ms": 580.0}
    assert figures["round"] == {"p50_ms": 60.0, "p95_ms": 60.0}
    assert figures["rounds_passed_by"] == {0: 1, 1: 1}
    assert figures["rounds"] == 2


def test_a_leg_never_offered_is_left_out() -> None:
    figures = stage_figures({"a": at(0)}, {"a": at(5)}, {}, {})
    assert figures == {}
