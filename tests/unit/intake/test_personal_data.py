"""Which fields of a task are personal data, and when a task is over."""

from __future__ import annotations

from typing import Any

from services.dispatcher.domain.personal_data import erase_details
from services.intake.domain.personal_data import erase_request, has_ended


def test_erasing_a_request_empties_people_and_keeps_what_reports_need() -> None:
    request: dict[str, Any] = {
        "kind": "meal",
        "notes": "ring twice",
        "pickup": {
            "lat": 29.8,
            "lon": 121.5,
            "address": "Kitchen A",
            "contact_name": "Li",
            "contact_phone": None,
        },
        "dropoffs": [
            {
                "lat": 29.9,
                "lon": 121.6,
                "address": "Flat 3",
                "recipient_name": "Wang",
                "recipient_email": "w@x.cn",
            },
            {"lat": 29.7, "lon": 121.4, "notes": ""},
        ],
        "items": [{"name": "lunch", "quantity": 1}],
    }
    erased = erase_request(request)
    assert erased.fields == 5  # notes, contact_name, address, recipient_name, recipient_email
    assert erased.request["pickup"] == {**request["pickup"], "contact_name": None}
    assert erased.request["dropoffs"][0] == {
        "lat": 29.9,
        "lon": 121.6,
        "address": None,
        "recipient_name": None,
        "recipient_email": None,
    }
    assert erased.request["items"] == request["items"] and erased.request["notes"] is None
    assert request["notes"] == "ring twice", "the original is left as it was"
    assert erase_request(erased.request).fields == 0


def test_a_task_is_over_only_when_every_leg_is() -> None:
    assert has_ended("completed", ["confirmed", "cancelled"])
    assert has_ended("cancelled", ["cancelled"])
    assert not has_ended("cancelled", ["cancelled", "picked_up"]), "goods still in a volunteer's hands"
    assert not has_ended("in_progress", ["confirmed"])


def test_a_legs_details_lose_contacts_sealed_copies_and_notes() -> None:
    details = {
        "kind": "meal",
        "pickup": {"lat": 1.0, "lon": 2.0, "contact_name_masked": "L*", "contact_sealed": "abc"},
        "dropoff": {"lat": 1.1, "lon": 2.1, "recipient_sealed": "xyz", "notes": "dog", "language": "en"},
        "code_hash": "h",
    }
    erased = erase_details(details)
    assert erased["pickup"] == {"lat": 1.0, "lon": 2.0, "contact_name_masked": None, "contact_sealed": None}
    assert erased["dropoff"] == {
        "lat": 1.1,
        "lon": 2.1,
        "recipient_sealed": None,
        "notes": None,
        "language": "en",
    }
    assert erased["code_hash"] == "h" and erased["kind"] == "meal"
