"""The one retry rule: delays grow to a cap after failures and start over after a success."""

from __future__ import annotations

from shared.backoff import Backoff


def test_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(first=0.2, most=1.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_success_starts_the_delays_over() -> None:
    backoff = Backoff(first=0.5, most=10.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.succeeded()
    assert backoff.next_delay() == 0.5
