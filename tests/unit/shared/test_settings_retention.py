"""How long outboxes keep published events, against how long inboxes remember applied ones."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings

DAY = 24 * 3600


def test_outboxes_keep_nothing_by_default_as_a_broker_with_its_own_log_needs() -> None:
    assert Settings().outbox_retention_s == 0


def test_an_outbox_retention_well_within_the_inbox_retention_is_accepted() -> None:
    settings = Settings.model_validate({"outbox_retention_s": 3 * DAY, "inbox_retention_s": 14 * DAY})
    assert settings.outbox_retention_s == 3 * DAY


@pytest.mark.parametrize("outbox_days", [14, 13.5, 20])
def test_inboxes_must_remember_events_a_day_longer_than_outboxes_keep_them(outbox_days: float) -> None:
    with pytest.raises(ValidationError, match="INBOX_RETENTION_S must exceed OUTBOX_RETENTION_S"):
        Settings.model_validate({"outbox_retention_s": outbox_days * DAY, "inbox_retention_s": 14 * DAY})
