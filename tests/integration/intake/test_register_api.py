"""The register of people served and saved places over real HTTP, against the live intake process
(started without a geocoder), and their use on tasks."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from errands import admin
from services.intake.domain.errors import (
    ARCHIVED_PLACE,
    NO_GEOCODER,
    UNKNOWN_PLACE,
    UNKNOWN_RECIPIENT,
)
from tests.client import until
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body


async def call(
    http: aiohttp.ClientSession, method: str, url: str, operator: Operator, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=operator.headers) as response:
        text = await response.text()
        return response.status, (await response.json(content_type=None)) if text else None


@pytest.fixture
async def stranger(stack: Stack) -> Operator:
    created = await admin.new_organisation(stack.settings(), f"other-{uuid.uuid4().hex[:8]}")
    return Operator(uuid.UUID(created["id"]), created["operator_token"])


ALICE: dict[str, Any] = {
    "name": "Alice 王小明",
    "phone": "+86 138 1234 5678",
    "email": "Alice@Example.org",
    "language": "en",
    "address": "宁波市 中山西路 12号",
    "lat": 29.87,
    "lon": 121.54,
    "vulnerable": True,
    "no_contact": False,
    "access_notes": "3rd floor, gate 4417#, friendly dog",
    "consent_given_at": "2026-11-30T09:00:00Z",
    "consent_given_by": "her daughter, by phone",
}


async def new_recipient(http: aiohttp.ClientSession, intake: str, operator: Operator, **fields: Any) -> Any:
    body = {
        name: value
        for name, value in {**ALICE, **fields}.items()
        if value is not None or name not in ("lat", "lon")
    }
    status, recipient = await call(http, "POST", f"{intake}/v1/recipients", operator, body)
    assert status == 201, recipient
    return recipient


async def test_a_recipient_is_full_on_its_record_and_masked_in_lists(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    created = await new_recipient(http, intake, operator)
    assert created["name"] == ALICE["name"] and created["phone"] == ALICE["phone"]
    status, record = await call(http, "GET", f"{intake}/v1/recipients/{created['id']}", operator)
    assert status == 200
    assert {
        k: record[k] for k in ("name", "phone", "email", "address", "access_notes", "consent_given_by")
    } == {k: ALICE[k] for k in ("name", "phone", "email", "address", "access_notes", "consent_given_by")}
    assert record["erase_after"] > record["created_at"]

    status, page = await call(http, "GET", f"{intake}/v1/recipients", operator)
    assert status == 200 and [item["id"] for item in page["items"]] == [created["id"]]
    listed = page["items"][0]
    assert listed["name_masked"] == "A" + "*" * (len(ALICE["name"]) - 1)
    assert listed["phone_masked"].endswith("5678") and "1234" not in listed["phone_masked"]
    assert listed["email_masked"] == "A****@Example.org"
    assert listed["has_location"] is True
    assert "name" not in listed and "phone" not in listed and "access_notes" not in listed

    # At rest, nothing identifying is in clear.
    connection = await asyncpg.connect(stack.database_url)
    try:
        row = await connection.fetchrow(
            "SELECT * FROM intake.recipients WHERE id = $1", uuid.UUID(created["id"])
        )
    finally:
        await connection.close()
    stored = " ".join(str(value) for value in dict(row).values())
    for secret in ("Alice", "王小明", "5678", "Example", "中山", "dog", "daughter", "29.87"):
        assert secret not in stored


@pytest.mark.parametrize(
    "query",
    [
        "ali",
        "王小明",
        "小明",
        "中山西路",
        "+8613812345678",
        "86 138-1234-5678",
        "alice@example.org",
        "ALICE 中山",
    ],
)
async def test_recipients_are_found_by_name_phone_email_or_address(
    http: aiohttp.ClientSession, intake: str, operator: Operator, query: str
) -> None:
    wanted = await new_recipient(http, intake, operator)
    await new_recipient(
        http,
        intake,
        operator,
        name="Bob",
        phone="+64 21 000 111",
        email="bob@example.net",
        address="1 Quay St",
    )
    status, page = await call(http, "GET", f"{intake}/v1/recipients?{_q(query)}", operator)
    assert status == 200, page
    assert [item["id"] for item in page["items"]] == [wanted["id"]]


def _q(query: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"q": query})


async def test_a_search_that_matches_nobody_finds_nobody(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    await new_recipient(http, intake, operator)
    for query in ("lice", "zzz", "+8613800000000", "???"):
        status, page = await call(http, "GET", f"{intake}/v1/recipients?{_q(query)}", operator)
        assert (status, page["items"]) == (200, []), query


async def test_the_recipient_list_pages_by_cursor(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    ids = {(await new_recipient(http, intake, operator, name=f"Person {i}"))["id"] for i in range(5)}
    seen: list[str] = []
    cursor = ""
    while True:
        status, page = await call(http, "GET", f"{intake}/v1/recipients?limit=2{cursor}", operator)
        assert status == 200
        seen += [item["id"] for item in page["items"]]
        if not page["has_more"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted(ids) and len(seen) == 5


async def test_a_recipient_is_changed_renewed_and_erased(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    created = await new_recipient(http, intake, operator)
    url = f"{intake}/v1/recipients/{created['id']}"
    status, changed = await call(
        http, "PATCH", url, operator, {"phone": None, "name": "Alicia", "lat": 1.0, "lon": 2.0}
    )
    assert status == 200, changed
    assert (changed["phone"], changed["name"], changed["lat"], changed["email"]) == (
        None,
        "Alicia",
        1.0,
        ALICE["email"],
    )
    status, page = await call(http, "GET", f"{intake}/v1/recipients?q=alicia", operator)
    assert [item["id"] for item in page["items"]] == [created["id"]]
    status, page = await call(http, "GET", f"{intake}/v1/recipients?{_q(ALICE['phone'])}", operator)
    assert page["items"] == []  # the old phone no longer finds them

    status, renewed = await call(http, "POST", f"{url}/renew", operator)
    assert status == 200 and renewed["renewed_at"] is not None
    assert renewed["erase_after"] >= changed["erase_after"]

    status, problem = await call(http, "PATCH", url, operator, {"name": None})
    assert status == 422 and problem["errors"][0]["field"] == "$.name"
    status, problem = await call(http, "PATCH", url, operator, {"address": "somewhere new"})
    assert status == 422 and problem["errors"] == [
        {"field": "$.address", "message": NO_GEOCODER, "type": "location_missing"}
    ]

    assert (await call(http, "DELETE", url, operator))[0] == 204
    assert (await call(http, "GET", url, operator))[0] == 404
    assert (await call(http, "DELETE", url, operator))[0] == 404


async def test_another_organisations_recipient_is_not_found(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stranger: Operator
) -> None:
    theirs = await new_recipient(http, intake, stranger)
    url = f"{intake}/v1/recipients/{theirs['id']}"
    assert (await call(http, "GET", url, operator))[0] == 404
    assert (await call(http, "PATCH", url, operator, {"name": "Mallory"}))[0] == 404
    assert (await call(http, "POST", f"{url}/renew", operator))[0] == 404
    assert (await call(http, "DELETE", url, operator))[0] == 404
    status, page = await call(http, "GET", f"{intake}/v1/recipients?q=alice", operator)
    assert (status, page["items"]) == (200, [])
    status, record = await call(http, "GET", url, stranger)
    assert (status, record["name"]) == (200, ALICE["name"])  # untouched


async def test_without_a_geocoder_an_address_without_coordinates_is_refused_saying_so(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    body = {"name": "Carol", "address": "1 Main St"}
    status, problem = await call(http, "POST", f"{intake}/v1/recipients", operator, body)
    assert status == 422 and problem["errors"][0]["field"] == "$.address"
    assert "no geocoder is configured" in problem["errors"][0]["message"]
    status, problem = await call(
        http, "POST", f"{intake}/v1/places", operator, {"name": "Depot", "address": "x"}
    )
    assert status == 422 and problem["errors"][0]["field"] == "$.address"
    drop = {"address": "2 Side St", "recipient_name": "Dan"}
    status, problem, _ = await submit(http, intake, operator, task_body(dropoffs=[drop]))
    assert status == 422 and problem["errors"][0] == {
        "field": "$.dropoffs[0].address",
        "message": NO_GEOCODER,
        "type": "location_missing",
    }


KITCHEN: dict[str, Any] = {
    "name": "Central kitchen",
    "kind": "kitchen",
    "lat": -45.87,
    "lon": 170.5,
    "address": "1 Kitchen Lane",
    "contact_name": "Chef Mere",
    "contact_phone": "+64 3 477 1111",
    "opening_hours": "Mo-Sa 06:00-14:00",
}


async def test_places_are_saved_listed_changed_and_archived(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stranger: Operator
) -> None:
    status, place = await call(http, "POST", f"{intake}/v1/places", operator, KITCHEN)
    assert status == 201 and {k: place[k] for k in KITCHEN} == KITCHEN
    url = f"{intake}/v1/places/{place['id']}"
    status, got = await call(http, "GET", url, operator)
    assert (status, got) == (200, place)
    status, changed = await call(http, "PATCH", url, operator, {"opening_hours": None, "name": "Kitchen 1"})
    assert status == 200 and (changed["opening_hours"], changed["name"], changed["lat"]) == (
        None,
        "Kitchen 1",
        -45.87,
    )
    status, page = await call(http, "GET", f"{intake}/v1/places", operator)
    assert [item["id"] for item in page["items"]] == [place["id"]]

    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        assert (await call(http, method, url, stranger, body))[0] == 404, method
    assert (await call(http, "GET", f"{intake}/v1/places", stranger))[1]["items"] == []

    assert (await call(http, "DELETE", url, operator))[0] == 204
    assert (await call(http, "DELETE", url, operator))[0] == 204  # archiving again changes nothing
    assert (await call(http, "GET", f"{intake}/v1/places", operator))[1]["items"] == []
    status, page = await call(http, "GET", f"{intake}/v1/places?archived=true", operator)
    assert [item["id"] for item in page["items"]] == [place["id"]] and page["items"][0]["archived_at"]
    status, got = await call(http, "GET", url, operator)
    assert status == 200 and got["archived_at"] is not None


async def test_places_are_found_by_words_of_their_name(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stranger: Operator
) -> None:
    made = {}
    for name in ("Haishu Food Bank", "Jiangbei food depot", "Pharmacy 100% open", "Pharmacy 1000"):
        status, place = await call(http, "POST", f"{intake}/v1/places", operator, {**KITCHEN, "name": name})
        assert status == 201, place
        made[name] = place["id"]

    async def found(q: str, who: Operator = operator) -> list[str]:
        status, page = await call(http, "GET", f"{intake}/v1/places?{_q(q)}", who)
        assert status == 200, page
        return sorted(item["name"] for item in page["items"])

    assert await found("FOOD") == ["Haishu Food Bank", "Jiangbei food depot"]
    assert await found("food bank") == ["Haishu Food Bank"]
    assert await found("100%") == ["Pharmacy 100% open"], "a % is a percent sign, not a wildcard"
    assert await found("_") == []
    assert await found("food", stranger) == []
    status, problem = await call(http, "GET", f"{intake}/v1/places?q=", operator)
    assert status == 400 and problem["errors"][0]["field"] == "q", problem


async def test_a_task_names_a_place_and_recipients_and_keeps_a_copy_of_what_it_used(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    _, place = await call(http, "POST", f"{intake}/v1/places", operator, KITCHEN)
    alice = await new_recipient(http, intake, operator, lat=-45.88, lon=170.51)
    body = task_body(
        pickup={"place_id": place["id"], "ready_at": None},
        dropoffs=[
            {"recipient_id": alice["id"]},
            {"recipient_id": alice["id"], "notes": "leave with the neighbour", "lat": -45.9, "lon": 170.6},
            {"lat": -45.89, "lon": 170.52, "recipient_name": "Ben"},  # the existing form, unchanged
        ],
    )
    status, created, _ = await submit(http, intake, operator, body)
    assert status == 201, created

    status, task = await call(http, "GET", f"{intake}/v1/tasks/{created['id']}", operator)
    assert status == 200
    pickup = task["pickup"]
    assert (pickup["place_id"], pickup["lat"], pickup["lon"]) == (place["id"], -45.87, 170.5)
    assert (pickup["address"], pickup["contact_name"], pickup["contact_phone"]) == (
        "1 Kitchen Lane",
        "Chef Mere",
        "+64 3 477 1111",
    )
    first, second, third = (leg["dropoff"] for leg in task["legs"])
    assert first["recipient_id"] == alice["id"]
    assert (first["lat"], first["lon"], first["recipient_name"], first["recipient_phone"]) == (
        -45.88,
        170.51,
        ALICE["name"],
        ALICE["phone"],
    )
    assert (first["language"], first["vulnerable"], first["notes"], first["address"]) == (
        "en",
        True,
        ALICE["access_notes"],
        ALICE["address"],
    )
    assert (second["lat"], second["notes"], second["recipient_name"]) == (
        -45.9,
        "leave with the neighbour",
        ALICE["name"],
    )
    assert (third["recipient_name"], third["recipient_id"], third["language"]) == ("Ben", None, "zh")

    # Using a recipient on a task counts as their activity.
    status, record = await call(http, "GET", f"{intake}/v1/recipients/{alice['id']}", operator)
    assert record["last_used_at"] is not None

    # Later edits, archiving or erasure of the records do not reach the task.
    await call(http, "PATCH", f"{intake}/v1/recipients/{alice['id']}", operator, {"name": "Someone else"})
    await call(http, "PATCH", f"{intake}/v1/places/{place['id']}", operator, {"lat": 1.0, "lon": 1.0})
    await call(http, "DELETE", f"{intake}/v1/recipients/{alice['id']}", operator)
    await call(http, "DELETE", f"{intake}/v1/places/{place['id']}", operator)
    status, again = await call(http, "GET", f"{intake}/v1/tasks/{created['id']}", operator)
    assert again["pickup"] == task["pickup"] and again["legs"][0]["dropoff"] == first

    # The dispatcher receives the filled coordinates through task.submitted.
    connection = await asyncpg.connect(stack.database_url)
    try:

        async def dispatched() -> list[Any] | None:
            rows = await connection.fetch(
                "SELECT pickup_lat, pickup_lon, dropoff_lat, dropoff_lon FROM dispatch.legs"
                ' WHERE task_id = $1 ORDER BY "index"',
                uuid.UUID(created["id"]),
            )
            return [tuple(row) for row in rows] if len(rows) == 3 else None

        legs = await until(dispatched, timeout_s=30, what="the task's legs at the dispatcher")
    finally:
        await connection.close()
    assert legs == [
        (-45.87, 170.5, -45.88, 170.51),
        (-45.87, 170.5, -45.9, 170.6),
        (-45.87, 170.5, -45.89, 170.52),
    ]


async def test_a_replayed_submission_is_answered_as_first_even_after_its_records_changed(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    alice = await new_recipient(http, intake, operator)
    body, key = task_body(dropoffs=[{"recipient_id": alice["id"]}]), str(uuid.uuid4())
    status, first, _ = await submit(http, intake, operator, body, key=key)
    assert status == 201
    await call(http, "DELETE", f"{intake}/v1/recipients/{alice['id']}", operator)
    status, again, headers = await submit(http, intake, operator, body, key=key)
    assert (status, again, headers["Idempotent-Replayed"]) == (201, first, "true")


@pytest.mark.parametrize("where", ["pickup", "dropoff"])
async def test_an_unknown_or_foreign_or_archived_record_on_a_task_is_refused_naming_the_field(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stranger: Operator, where: str
) -> None:
    _, theirs = await call(http, "POST", f"{intake}/v1/places", stranger, KITCHEN)
    _, ours = await call(http, "POST", f"{intake}/v1/places", operator, KITCHEN)
    await call(http, "DELETE", f"{intake}/v1/places/{ours['id']}", operator)
    field = "$.pickup.place_id" if where == "pickup" else "$.dropoffs[0].place_id"
    for place_id, message in (
        (str(uuid.uuid4()), UNKNOWN_PLACE),
        (theirs["id"], UNKNOWN_PLACE),
        (ours["id"], ARCHIVED_PLACE),
    ):
        stop = {"place_id": place_id}
        body = task_body(pickup=stop) if where == "pickup" else task_body(dropoffs=[stop])
        status, problem, _ = await submit(http, intake, operator, body)
        assert status == 422, problem
        assert problem["errors"] == [{"field": field, "message": message}]


async def test_another_organisations_recipient_on_a_task_is_refused_naming_the_field(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stranger: Operator
) -> None:
    theirs = await new_recipient(http, intake, stranger)
    for recipient_id in (theirs["id"], str(uuid.uuid4())):
        body = task_body(dropoffs=[{"lat": 1.0, "lon": 1.0}, {"recipient_id": recipient_id}])
        status, problem, _ = await submit(http, intake, operator, body)
        assert status == 422, problem
        assert problem["errors"] == [{"field": "$.dropoffs[1].recipient_id", "message": UNKNOWN_RECIPIENT}]


async def test_a_recipient_without_a_location_needs_one_on_the_dropoff(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    nowhere = await new_recipient(http, intake, operator, address=None, lat=None, lon=None)
    assert nowhere["lat"] is None
    status, problem, _ = await submit(
        http, intake, operator, task_body(dropoffs=[{"recipient_id": nowhere["id"]}])
    )
    assert status == 422 and problem["errors"][0]["field"] == "$.dropoffs[0].recipient_id"
    drop = {"recipient_id": nowhere["id"], "lat": -45.9, "lon": 170.6}
    status, created, _ = await submit(http, intake, operator, task_body(dropoffs=[drop]))
    assert status == 201, created
