"""The dispatcher HTTP API on the running system: registry, scoping, hand assignment, problems, polls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, leg_arrives, somewhere

pytestmark = pytest.mark.e2e


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def test_operators_list_their_own_volunteers_a_page_at_a_time(client: Client) -> None:
    operator, other = await client.organisation(), await client.organisation()
    place = somewhere()
    mine = [(await client.volunteer(operator, place))[0] for _ in range(3)]
    status, created = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers", operator, json={"name": "Off Duty"}
    )
    assert status == 201
    await client.volunteer(other, place)

    seen, cursor = [], None
    while True:
        query = "limit=2&status=on_duty" + (f"&cursor={cursor}" if cursor else "")
        status, page = await client.call("GET", f"{client.dispatcher}/v1/volunteers?{query}", operator)
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == mine, "own organisation only, on duty only, oldest first, each once"
    status, page = await client.call("GET", f"{client.dispatcher}/v1/volunteers?status=off_duty", operator)
    assert [item["id"] for item in page["items"]] == [created["id"]]
    status, problem = await client.call("GET", f"{client.dispatcher}/v1/volunteers?limit=201", operator)
    assert status == 400 and problem["errors"][0]["field"] == "limit"
    status, _ = await client.call("GET", f"{client.dispatcher}/v1/volunteers?cursor=not-ours", operator)
    assert status == 400


async def test_operators_list_the_volunteers_whose_insurance_lapses_within_a_week(client: Client) -> None:
    operator, other = await client.organisation(), await client.organisation()
    place = somewhere()
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the configured local time zone
    ends = {
        "today": today,
        "in six days": today + timedelta(days=6),
        "in seven days": today + timedelta(days=7),
        "yesterday": today - timedelta(days=1),
    }
    ids = {
        when: (await client.volunteer(operator, place, insured_until=day.isoformat()))[0]
        for when, day in ends.items()
    }
    open_ended, _ = await client.volunteer(operator, place)
    await client.volunteer(other, place, insured_until=today.isoformat())

    url = f"{client.dispatcher}/v1/volunteers?insurance_lapses_within_days=7"
    status, page = await client.call("GET", url, operator)
    assert status == 200
    assert [item["id"] for item in page["items"]] == [ids["today"], ids["in six days"]]
    assert page["items"][0]["insured"] is True
    assert page["items"][0]["insured_until"] == today.isoformat()
    status, view = await client.call("GET", f"{client.dispatcher}/v1/volunteers/{open_ended}", operator)
    assert (view["insured"], view["insured_until"]) == (True, None)
    status, problem = await client.call(
        "GET", f"{client.dispatcher}/v1/volunteers?insurance_lapses_within_days=0", operator
    )
    assert status == 400 and problem["errors"][0]["field"] == "insurance_lapses_within_days"


async def test_an_insurance_end_date_implies_insured_and_insured_false_clears_it(client: Client) -> None:
    operator = await client.organisation()
    volunteers = f"{client.dispatcher}/v1/volunteers"
    status, created = await client.call(
        "POST", volunteers, operator, json={"name": "Zhao Min", "insured_until": "2027-03-31"}
    )
    assert status == 201 and (created["insured"], created["insured_until"]) == (True, "2027-03-31")
    url = f"{volunteers}/{created['id']}"
    status, view = await client.call("PATCH", url, operator, json={"insured_until": None})
    assert status == 200 and (view["insured"], view["insured_until"]) == (True, None)
    status, view = await client.call("PATCH", url, operator, json={"insured_until": "2027-06-30"})
    assert status == 200 and (view["insured"], view["insured_until"]) == (True, "2027-06-30")
    status, view = await client.call("PATCH", url, operator, json={"name": "Zhao Min"})
    assert status == 200 and view["insured_until"] == "2027-06-30", "left out, left as it is"
    status, view = await client.call("PATCH", url, operator, json={"insured": False})
    assert status == 200 and (view["insured"], view["insured_until"]) == (False, None)
    status, view = await client.call(
        "POST",
        volunteers,
        operator,
        json={"name": "Qian Li", "insured": False, "insured_until": "2027-03-31"},
    )
    assert status == 201 and (view["insured"], view["insured_until"]) == (False, None)
    status, problem = await client.call(
        "POST", volunteers, operator, json={"name": "Sun Bo", "insured_until": 20270331}
    )
    assert status == 422 and problem["errors"][0]["field"] == "$.insured_until"


async def test_operators_change_their_volunteers_and_not_another_organisations(client: Client) -> None:
    operator, other = await client.organisation(), await client.organisation()
    volunteer_id, _ = await client.volunteer(operator, somewhere())
    url = f"{client.dispatcher}/v1/volunteers/{volunteer_id}"
    status, view = await client.call(
        "PATCH", url, operator, json={"vehicle": "car", "max_active_legs": 4, "skills": ["lifting"]}
    )
    assert status == 200 and (view["vehicle"], view["max_active_legs"], view["skills"]) == (
        "car",
        4,
        ["lifting"],
    )
    assert (await client.call("GET", url, operator))[1]["vehicle"] == "car"
    assert (await client.call("PATCH", url, other, json={"vehicle": "foot"}))[0] == 404
    assert (await client.call("GET", url, other))[0] == 404
    status, problem = await client.call("PATCH", url, operator, json={"max_active_legs": 0})
    assert status == 422 and problem["errors"][0]["field"] == "$.max_active_legs"


async def test_hand_assignment_problem_report_and_volunteer_scoping(
    client: Client, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    operator, other = await client.organisation(), await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place, vehicle="foot")
    _, stranger = await client.volunteer(other, (place[0] + 0.001, place[1]))
    other_org_volunteer, _ = await client.volunteer(other, (place[0] - 30, place[1]))
    task = await client.task(operator, (place[0] + 40, place[1]))  # far beyond anyone's radius
    leg_id = task["legs"][0]["id"]
    assign = f"{client.dispatcher}/v1/legs/{leg_id}/assign"
    await leg_arrives(sessionmaker, leg_id)

    assert (await client.call("POST", assign, other, json={"volunteer_id": volunteer_id}))[0] == 404
    assert (await client.call("POST", assign, operator, json={"volunteer_id": other_org_volunteer}))[0] == 404
    status, assigned = await client.call("POST", assign, operator, json={"volunteer_id": volunteer_id})
    assert status == 200 and assigned["status"] == "assigned"

    _, view, _ = await client.poll(token)
    assert [leg["id"] for leg in view["legs"]] == [leg_id]
    problem = f"{client.dispatcher}/v1/me/legs/{leg_id}/problem"
    assert (await client.call("POST", problem, stranger, json={"reason": "not mine"}))[0] == 404
    assert (await client.call("POST", f"{client.dispatcher}/v1/me/offers/{uuid.uuid4()}/accept", stranger))[
        0
    ] == 404
    status, body = await client.call("POST", problem, token, json={"reason": "bike broke"})
    assert status == 200 and body["status"] == "pending"
    _, view, _ = await client.poll(token)
    assert view == {"offers": [], "legs": []}


async def test_accepting_a_withdrawn_offer_is_a_conflict(client: Client) -> None:
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    other_id, _ = await client.volunteer(operator, (place[0] + 5, place[1]))
    task = await client.task(operator, place)
    leg_id = task["legs"][0]["id"]
    offer = await client.until_offered(token, leg_id)
    status, _ = await client.call(
        "POST", f"{client.dispatcher}/v1/legs/{leg_id}/assign", operator, json={"volunteer_id": other_id}
    )
    assert status == 200
    status, problem = await client.call(
        "POST", f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept", token
    )
    assert status == 409 and problem["status"] == 409
    assert volunteer_id != other_id


async def test_an_unchanged_long_poll_waits_and_answers_not_modified(client: Client) -> None:
    operator = await client.organisation()
    _, token = await client.volunteer(operator, somewhere())
    status, _, etag = await client.poll(token)
    assert status == 200
    status, _, again = await client.poll(token, etag=etag, wait=1)
    assert (status, again) == (304, etag)
    assert (await client.poll(token, etag='"stale"', wait=30))[0] == 200, "a stale ETag answers at once"


async def test_an_accepted_leg_shows_estimates_that_a_new_location_refreshes_here_and_in_the_task(
    client: Client,
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, (place[0] - 0.01, place[1]))
    task = await client.task(operator, place)
    leg_id = task["legs"][0]["id"]
    offer = await client.until_offered(token, leg_id)
    status, accepted = await client.call(
        "POST", f"{client.dispatcher}/v1/me/offers/{offer['id']}/accept", token
    )
    assert status == 200 and accepted["pickup_eta"] and accepted["dropoff_eta"]
    first = datetime.fromisoformat(accepted["dropoff_eta"])
    # Twenty kilometres further away by bicycle: well over an hour later.
    far = {"lat": place[0] - 0.19, "lon": place[1]}
    assert (await client.call("POST", f"{client.dispatcher}/v1/me/location", token, json=far))[0] == 202
    _, view, etag = await client.poll(token)
    for _ in range(50):
        if view["legs"] and datetime.fromisoformat(view["legs"][0]["dropoff_eta"]) - first > timedelta(
            hours=1
        ):
            break
        status, changed, etag = await client.poll(token, etag=etag, wait=5)
        view = changed if status == 200 else view
    (leg,) = view["legs"]
    assert datetime.fromisoformat(leg["dropoff_eta"]) - first > timedelta(hours=1)
    refreshed = leg["dropoff_eta"]
    # The operator's read model follows through the dispatch topic.
    for _ in range(100):
        status, read = await client.call("GET", f"{client.intake}/v1/tasks/{task['id']}", operator)
        assert status == 200
        if read["legs"][0]["dropoff_eta"] and datetime.fromisoformat(
            read["legs"][0]["dropoff_eta"]
        ) == datetime.fromisoformat(refreshed):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the task never showed the refreshed estimate: {read['legs'][0]}")
    assert read["legs"][0]["pickup_eta"] is not None
