"""Only volunteers an operator approved are sent out: by the matcher, and by hand even with an override."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain.errors import VolunteerNotVetted
from tests.unit.dispatcher.test_eligibility import NOW, POLICY, leg, volunteer


def test_an_unvetted_volunteer_is_not_eligible_though_fit_in_every_other_way() -> None:
    fit = volunteer()
    assert e.is_eligible(fit, leg(), NOW, POLICY)
    pending = replace(fit, vetted=False)
    assert not e.is_eligible(pending, leg(), NOW, POLICY)
    assert e.broken_rules(pending, leg(), NOW, POLICY) == ["vetted"]


def test_no_override_sends_an_unvetted_volunteer_by_hand() -> None:
    pending = replace(volunteer(), vetted=False)
    for overridden in (False, True):
        with pytest.raises(VolunteerNotVetted, match="not been approved"):
            e.ensure_may_assign_by_hand(pending, NOW, POLICY, overridden=overridden)
