"""What a volunteer's app sees of a leg: notes only once it is theirs."""

from __future__ import annotations

import uuid

from services.dispatcher.adapters.tables import LegRow
from services.dispatcher.service_layer.views import leg_view


def _leg() -> LegRow:
    return LegRow(
        id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        status="offered",
        priority="routine",
        flagged_at=None,
        details={
            "pickup": {"lat": 1.0, "lon": 2.0},
            "dropoff": {"lat": 1.1, "lon": 2.1, "notes": "Dog in the yard", "recipient_sealed": None},
            "items": [],
            "kind": "errand",
            "notes": "Ring twice",
        },
    )


def test_an_offer_shows_neither_the_tasks_nor_the_drop_offs_notes() -> None:
    view = leg_view(_leg(), assigned=False, data_key=b"k" * 32)
    assert view["notes"] is None
    assert "notes" not in view["dropoff"]


def test_the_carrier_sees_the_tasks_and_the_drop_offs_notes() -> None:
    view = leg_view(_leg(), assigned=True, data_key=b"k" * 32)
    assert view["notes"] == "Ring twice"
    assert view["dropoff"]["notes"] == "Dog in the yard"
