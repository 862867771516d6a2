"""More of the volunteer app in headless Chromium on the real stack: fixes over the location
WebSocket (not HTTP), the server's refusals in words, an offline action refused on replay, Decline,
and "Report a problem".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Stack
from tests.e2e.test_volunteer_app import (
    Centre,
    browser,
    centre,
    enrol_and_go_on_duty,
    place_phone,
    shows,
)
from tests.client import bearer, until
from tests.pages import axe_violations, by_text, needs_chromium, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]
__all__ = ["browser", "centre"]  # fixtures, shared with the first file


async def requests_served(http: aiohttp.ClientSession, dispatcher: str, route: str, method: str) -> float:
    """How many requests the dispatcher served on `route` so far, by its Prometheus counter."""
    async with http.get(f"{dispatcher}/metrics") as response:
        assert response.status == 200
        exported = await response.text()
    pattern = re.compile(
        r'^errands_http_requests_total\{([^}]*)\} ([0-9.e+]+)$', re.MULTILINE
    )
    total = 0.0
    for labels, value in pattern.findall(exported):
        if f'route="{route}"' in labels and f'method="{method}"' in labels:
            total += float(value)
    return total


async def location_of(centre: Centre, volunteer_id: str) -> tuple[float, float] | None:
    async with centre.http.get(
        f"{centre.dispatcher}/v1/volunteers/{volunteer_id}", headers=bearer(centre.operator)
    ) as response:
        assert response.status == 200, await response.text()
        location = (await response.json())["location"]
    return (location["lat"], location["lon"]) if location and location["lat"] is not None else None


async def test_fixes_reach_the_server_over_the_websocket_not_http(centre: Centre, browser: Any) -> None:
    place = (69.6492, 18.9553)
    posted = await requests_served(centre.http, centre.dispatcher, "/v1/me/location", "POST")
    streams = await requests_served(centre.http, centre.dispatcher, "/v1/me/location/stream", "GET")
    volunteer_id = await enrol_and_go_on_duty(browser, centre, "Siri Example", place)
    # The phone moves 1 km: a fix past the 100 m threshold goes at once.
    moved = (place[0] + 0.009, place[1])
    place_phone(browser, centre.dispatcher, *moved)

    async def arrived() -> bool:
        where = await location_of(centre, volunteer_id)
        return where is not None and abs(where[0] - moved[0]) < 1e-6

    await until(arrived, what="the moved phone's fix reached the server", timeout_s=30)
    assert await requests_served(centre.http, centre.dispatcher, "/v1/me/location", "POST") == posted, (
        "no fix went by HTTP"
    )
    # The stream is counted once it ends: going off duty closes it.
    by_text(browser, "Go off duty", tag="button").click()
    await wait_for(browser, shows("Go on duty"))

    async def stream_counted() -> bool:
        served = await requests_served(centre.http, centre.dispatcher, "/v1/me/location/stream", "GET")
        return served > streams

    await until(stream_counted, what="the location stream was used", timeout_s=15)
    assert await requests_served(centre.http, centre.dispatcher, "/v1/me/location", "POST") == posted
    assert axe_violations(browser) == []
