"""When the matching loop builds a round's pool: early enough to be ready, never staler than half a window."""

from __future__ import annotations

import pytest

from services.dispatcher.service_layer.matcher import pool_lead

WINDOW = 0.5


def test_a_quick_pool_is_built_a_fifth_of_a_window_ahead() -> None:
    assert pool_lead(WINDOW, 0.0) == pytest.approx(WINDOW / 5)
    assert pool_lead(WINDOW, 0.05) == pytest.approx(WINDOW / 5)


def test_a_slow_pool_starts_half_as_long_again_as_it_took_ahead_of_the_round() -> None:
    assert pool_lead(WINDOW, 0.1) == pytest.approx(0.15)
    assert pool_lead(WINDOW, 0.14) == pytest.approx(0.21)


def test_never_more_than_half_a_window_ahead() -> None:
    assert pool_lead(WINDOW, 0.4) == pytest.approx(WINDOW / 2)
