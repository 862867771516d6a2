"""A CSV's rows become the JSON body the API takes strictly: numbers and yes/no as JSON types."""

from __future__ import annotations

from services.intake.entrypoints.csv_import import task_body


def test_numbers_and_flags_are_sent_as_json_types() -> None:
    rows = [
        {
            "kind": "meal",
            "pickup_lat": "29.87",
            "pickup_lon": "121.55",
            "items": "rice:2:1.5; soup:3",
            "dropoff_lat": "29.88",
            "dropoff_lon": "121",
            "no_contact": "Yes",
            "vulnerable": "false",
        }
    ]
    body = task_body(rows)
    assert body["pickup"] == {"lat": 29.87, "lon": 121.55}
    assert body["items"] == [
        {"name": "rice", "quantity": 2, "weight_kg": 1.5},
        {"name": "soup", "quantity": 3},
    ]
    assert body["dropoffs"] == [{"lat": 29.88, "lon": 121, "no_contact": True, "vulnerable": False}]


def test_a_cell_that_is_not_a_number_goes_as_written_for_the_api_to_name() -> None:
    body = task_body(
        [{"pickup_lat": "north", "pickup_lon": "121.5", "dropoff_lat": "1", "no_contact": "maybe"}]
    )
    assert body["pickup"]["lat"] == "north"
    assert body["dropoffs"][0]["no_contact"] == "maybe"
