"""A meal posted ahead of its ready time, through the running services: offered when the volunteer
must set off for it, not when it is posted, with its pickup planned for when it is ready."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.domain.geo import haversine_m, travel_time_s
from tests.client import bearer, until
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

KITCHEN = (29.7301, 121.6102)  # a spot no other test of the suite uses
HOME = (29.7301, 121.6112)  # about a hundred metres east of it
LEAD_S = 60.0  # the meal is posted this long before it is ready


async def test_a_meal_posted_ahead_is_offered_when_it_is_time_to_set_off(
    stack: Stack, system: ServiceProcesses
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{intake}/v1/organisations",
            json={"name": "Yinzhou kitchen"},
            headers=bearer(tokens["admin_token"]),
        ) as response:
            assert response.status == 201
            operator = (await response.json())["operator_token"]
        async with http.post(
            f"{dispatcher}/v1/volunteers",
            json={
                "name": "Li Na",
                "languages": ["zh"],
                "vehicle": "ebike",
                "capacity_kg": 20,
                "insured": True,
            },
            headers=bearer(operator),
        ) as response:
            assert response.status == 201, await response.text()
            me = bearer((await response.json())["token"])
        async with http.put(f"{dispatcher}/v1/me/duty", json={"on_duty": True}, headers=me) as response:
            assert response.status == 200
        async with http.post(
            f"{dispatcher}/v1/me/location", json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 8}, headers=me
        ) as response:
            assert response.status == 202

        posted = datetime.now(UTC)
        ready = posted + timedelta(seconds=LEAD_S)
        async with http.post(
            f"{intake}/v1/tasks",
            json={
                "kind": "meal",
                "pickup": {
                    "lat": KITCHEN[0],
                    "lon": KITCHEN[1],
                    "address": "Kitchen 3",
                    "ready_at": ready.isoformat(),
                },
                "dropoffs": [{"lat": 29.7351, "lon": 121.6152, "address": "Checkpoint 4"}],
                "items": [{"name": "lunch box", "quantity": 6, "weight_kg": 3.6}],
                "deliver_by": (ready + timedelta(minutes=45)).isoformat(),
            },
            headers={**bearer(operator), "Idempotency-Key": str(uuid.uuid4())},
        ) as response:
            assert response.status == 201, await response.text()
            task = await response.json()

        async def offers() -> list[dict[str, object]] | None:
            async with http.get(f"{dispatcher}/v1/me/assignments", headers=me) as response:
                assert response.status == 200
                found: list[dict[str, object]] = (await response.json())["offers"]
            return found or None

        offered = await until(offers, what="the planned trip offered", timeout_s=LEAD_S + 30)
        offered_at = time.time()
    ride_s = travel_time_s(haversine_m(*HOME, *KITCHEN), "ebike")
    set_off = ready.timestamp() - ride_s
    # Not when it was posted: when the volunteer had to set off, give or take the planner's pass
    # (every second here) and rounding, over 30 seconds after it was posted.
    assert offered_at >= set_off - 5, (offered_at - posted.timestamp(), ride_s)
    (offer,) = offered
    assert offer["leg"]["id"] == task["legs"][0]["id"]  # type: ignore[index]
    pickup = offer["route"]["stops"][0]  # type: ignore[index]
    assert pickup["kind"] == "pickup" and datetime.fromisoformat(pickup["eta"]) >= ready
