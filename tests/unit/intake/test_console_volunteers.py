"""How the volunteers page words a volunteer's insurance: lapsing soon is said, not only coloured."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.intake.entrypoints.console.volunteers import INSURANCE_WARNING_DAYS, insurance_state

TODAY = date(2026, 12, 6)


@pytest.mark.parametrize(
    ("insured", "until", "state"),
    [
        (False, None, "none"),
        (False, TODAY + timedelta(days=100), "none"),
        (True, None, "open_ended"),
        (True, TODAY - timedelta(days=1), "lapsed"),
        (True, TODAY, "lapsing"),
        (True, TODAY + timedelta(days=INSURANCE_WARNING_DAYS), "lapsing"),
        (True, TODAY + timedelta(days=INSURANCE_WARNING_DAYS + 1), "covered"),
    ],
)
def test_insurance_is_worded_by_how_soon_it_ends(insured: bool, until: date | None, state: str) -> None:
    assert insurance_state(insured, until, TODAY) == state
