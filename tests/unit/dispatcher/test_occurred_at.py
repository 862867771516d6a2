"""The time a volunteer says they acted: taken within its bounds, refused naming the field outside them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.entrypoints.schemas import check_occurred_at
from shared.http import ProblemError

BOUNDS = {"max_age_s": 24 * 3600.0, "max_skew_s": 300.0}


def test_no_time_is_now_and_a_time_within_the_bounds_is_kept() -> None:
    before = datetime.now(UTC)
    assert before <= check_occurred_at(None, **BOUNDS) <= datetime.now(UTC)
    earlier = before - timedelta(hours=23)
    assert check_occurred_at(earlier, **BOUNDS) == earlier
    assert check_occurred_at(before + timedelta(minutes=4), **BOUNDS) == before + timedelta(minutes=4)


@pytest.mark.parametrize("shift", [timedelta(minutes=6), -timedelta(hours=25)])
def test_a_time_too_far_ahead_or_too_old_is_refused_naming_the_field(shift: timedelta) -> None:
    with pytest.raises(ProblemError) as refused:
        check_occurred_at(datetime.now(UTC) + shift, **BOUNDS)
    assert refused.value.status == 422
    assert [error["field"] for error in refused.value.errors or []] == ["$.occurred_at"]
