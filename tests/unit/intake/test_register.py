"""The register's pure rules: search tokens, how a stop is filled from records, and where it is."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from services.intake.domain.register import (
    DROPOFF_FROM_PLACE,
    DROPOFF_FROM_RECIPIENT,
    Geocode,
    Location,
    Nowhere,
    fill_stop,
    locate,
    normalised_address,
    normalised_phone,
    query_tokens,
    search_tokens,
)
from services.intake.entrypoints.schemas import DropoffIn, PickupIn, RecipientIn, RecipientPatchIn
from shared import crypto


def finds(record: tuple[str, ...], query: str) -> bool:
    return query_tokens(query) <= search_tokens(*record)


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("ali", True),
        ("ALICE", True),
        ("alice wang", True),
        ("lice", False),
        ("bob", False),
        ("中山", True),
        ("小明", True),
        ("王", True),
        ("王小明 中山西路", True),
        ("明王", False),
        ("12", True),
    ],
)
def test_a_query_finds_records_holding_every_word_prefix_or_cjk_pair(query: str, found: bool) -> None:
    assert finds(("Alice 王小明 Wang", "宁波市 中山西路 12号"), query) is found


def test_phones_are_one_number_however_they_are_written() -> None:
    assert normalised_phone("+86 138-1234 1234") == normalised_phone("+8613812341234") == "8613812341234"
    assert normalised_phone("  ") is None


def test_addresses_are_cached_under_one_spelling() -> None:
    assert normalised_address("  1 Main   STREET ") == normalised_address("1 main street")


def test_a_blind_index_differs_between_organisations_and_fields() -> None:
    key = b"k" * 32
    assert crypto.blind_index(key, "org-a:phone", "123") != crypto.blind_index(key, "org-b:phone", "123")
    assert crypto.blind_index(key, "org-a:phone", "123") != crypto.blind_index(key, "org-a:email", "123")
    assert crypto.blind_index(key, "org-a:phone", "123") == crypto.blind_index(key, "org-a:phone", "123")


RECIPIENT = {
    "name": "Aroha",
    "phone": "+6421000111",
    "email": None,
    "language": "mi",
    "no_contact": True,
    "vulnerable": True,
    "access_notes": "dog at the gate",
    "address": "12 Home St",
    "lat": -45.1,
    "lon": 170.1,
}
PLACE = {
    "address": "Hospital Rd",
    "lat": -45.2,
    "lon": 170.2,
    "contact_name": "Ward 3",
    "contact_phone": "+64300",
}


def test_a_dropoff_takes_what_it_leaves_out_from_the_recipient_then_the_place() -> None:
    given = {"notes": "ring twice", "recipient_id": uuid.uuid4()}
    filled = fill_stop(
        given,
        [(PLACE, {"address": "address"}), (RECIPIENT, DROPOFF_FROM_RECIPIENT), (PLACE, DROPOFF_FROM_PLACE)],
    )
    assert filled["notes"] == "ring twice"  # what the request gives wins
    assert filled["recipient_name"] == "Aroha" and filled["language"] == "mi"
    assert filled["vulnerable"] is True and filled["no_contact"] is True
    assert filled["address"] == "Hospital Rd"  # the place says where


def test_a_dropoff_without_a_recipient_takes_the_place_contact() -> None:
    filled = fill_stop(
        {}, [(PLACE, {"address": "address"}), (None, DROPOFF_FROM_RECIPIENT), (PLACE, DROPOFF_FROM_PLACE)]
    )
    assert (filled["recipient_name"], filled["recipient_phone"]) == ("Ward 3", "+64300")


def test_a_stop_is_where_its_own_coordinates_then_its_address_then_its_records_say() -> None:
    assert locate(
        {"lat": 1.0, "lon": 2.0, "address": "x"}, path="$.p", place=PLACE, recipient=None
    ) == Location(1.0, 2.0)
    assert locate({"address": "x"}, path="$.p", place=PLACE, recipient=None) == Geocode("x", "$.p.address")
    assert locate({}, path="$.p", place=PLACE, recipient=RECIPIENT) == Location(-45.2, 170.2)
    assert locate({}, path="$.p", place=None, recipient=RECIPIENT) == Location(-45.1, 170.1)
    nowhere = locate({}, path="$.d", place=None, recipient={"lat": None, "lon": None})
    assert isinstance(nowhere, Nowhere) and nowhere.field == "$.d.recipient_id"


@pytest.mark.parametrize(
    "body",
    [
        {"lat": 1.0},
        {"lon": 1.0, "address": "x"},
        {},
        {"lat": None, "lon": 1.0, "address": "x"},
        {"place_id": None, "address": "x"},
        {"recipient_id": str(uuid.uuid4())},  # a pickup names no recipient
    ],
)
def test_a_pickup_needs_coordinates_together_or_a_source_of_them(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PickupIn.model_validate(body)


def test_the_existing_stop_forms_stay_valid() -> None:
    assert PickupIn.model_validate({"lat": 1.0, "lon": 2.0}).lat == 1.0
    drop = DropoffIn.model_validate({"recipient_id": str(uuid.uuid4()), "notes": "x"})
    assert drop.given().keys() == {"recipient_id", "notes"}  # defaults do not hide the recipient's values


def test_recipients_take_coordinates_together_and_never_null() -> None:
    RecipientIn.model_validate({"name": "A", "lat": 1.0, "lon": 2.0})
    with pytest.raises(ValidationError):
        RecipientIn.model_validate({"name": "A", "lat": 1.0})
    with pytest.raises(ValidationError):
        RecipientPatchIn.model_validate({"name": None})
    assert RecipientPatchIn.model_validate({"phone": None}).model_fields_set == {"phone"}
