"""Addresses without coordinates, looked up by the geocoding adapter against a local HTTP server that
answers in Nominatim's format (`/search?q=...&format=jsonv2&limit=1`), with intake in this process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.intake.adapters.geocoder import Geocoder
from services.intake.domain.errors import ADDRESS_NOT_FOUND
from services.intake.entrypoints.http import ERROR_STATUSES, KEYS, REGISTER, Register, api
from services.intake.service_layer.register import RegisterKeys
from services.intake.service_layer.submission import Keys
from shared import crypto
from shared.http import create_base_app
from shared.runtime import RUNTIME, Runtime
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body

KNOWN = {
    "1 kitchen lane, dunedin": ("-45.8741", "170.5036"),
    "宁波市 中山西路 12号": ("29.8733", "121.5440"),
}


@dataclass
class Nominatim:
    """A stand-in for Nominatim: known addresses, every request it saw, and a switch to misbehave."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "ok"  # ok | slow | error | garbage

    async def search(self, request: web.Request) -> web.Response:
        self.requests.append({"query": dict(request.query), "user_agent": request.headers.get("User-Agent")})
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "error":
            return web.Response(status=502, text="bad gateway")
        if self.mode == "garbage":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        found = KNOWN.get(" ".join(request.query.get("q", "").casefold().split()))
        if found is None:
            return web.json_response([])
        lat, lon = found
        return web.json_response(
            [
                {
                    "place_id": 1,
                    "licence": "Data © OpenStreetMap contributors, ODbL 1.0.",
                    "osm_type": "way",
                    "lat": lat,
                    "lon": lon,
                    "category": "building",
                    "type": "yes",
                    "place_rank": 30,
                    "importance": 0.1,
                    "addresstype": "building",
                    "display_name": request.query["q"],
                    "boundingbox": [lat, lat, lon, lon],
                }
            ]
        )


@pytest.fixture
async def nominatim() -> AsyncIterator[Nominatim]:
    fake = Nominatim()
    app = web.Application()
    app.router.add_get("/search", fake.search)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()


@pytest.fixture
async def geocoded_intake(stack: Stack, nominatim: Nominatim) -> AsyncIterator[str]:
    """Intake in this process with GEOCODER_URL pointing at the local Nominatim, timeout 0.5 s."""
    settings = stack.settings(geocoder_url=nominatim.url, geocoder_timeout_s=0.5)
    runtime = Runtime.build(settings, client_id="intake-geocoder-test")
    geocoder = Geocoder(
        url=settings.geocoder_url,
        sessionmaker=runtime.sessionmaker,
        # A key of this test's own, so other tests' cached answers are not this test's.
        cache_key=crypto.derived_key(uuid.uuid4().bytes, "geocode-cache"),
        cache_ttl_s=settings.geocoder_cache_ttl_s,
        timeout_s=settings.geocoder_timeout_s,
        user_agent=settings.geocoder_user_agent,
    )
    app = create_base_app(api=api, readiness=[], error_statuses=ERROR_STATUSES)
    app[RUNTIME] = runtime
    app[KEYS] = Keys(code_key=settings.code_key, data_key=settings.data_key)
    app[REGISTER] = Register(
        keys=RegisterKeys.from_data_key(settings.data_key), geocoder=geocoder, retention_s=365 * 86400.0
    )
    app.cleanup_ctx.append(geocoder.session_context)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await runtime.engine.dispose()


async def post(http: aiohttp.ClientSession, url: str, operator: Operator, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=operator.headers) as response:
        return response.status, await response.json(content_type=None)


async def test_a_recipient_address_is_geocoded_once_and_then_served_from_the_cache(
    http: aiohttp.ClientSession, geocoded_intake: str, operator: Operator, nominatim: Nominatim
) -> None:
    url = f"{geocoded_intake}/v1/recipients"
    status, first = await post(http, url, operator, {"name": "Alice", "address": "宁波市 中山西路 12号"})
    assert status == 201, first
    assert (first["lat"], first["lon"]) == (29.8733, 121.544)
    assert nominatim.requests == [
        {
            "query": {"q": "宁波市 中山西路 12号", "format": "jsonv2", "limit": "1"},
            "user_agent": "Errands/1.0 (volunteer dispatch)",
        }
    ]
    # The same address written differently is one cache entry: no second request.
    status, second = await post(http, url, operator, {"name": "Bob", "address": "  宁波市   中山西路 12号 "})
    assert status == 201 and (second["lat"], second["lon"]) == (29.8733, 121.544)
    assert len(nominatim.requests) == 1
    # Coordinates given are used as given, without asking.
    body = {"name": "Carol", "address": "somewhere unknown", "lat": 1.5, "lon": 2.5}
    status, third = await post(http, url, operator, body)
    assert (status, third["lat"]) == (201, 1.5) and len(nominatim.requests) == 1


async def test_a_task_address_without_coordinates_is_geocoded_into_the_task(
    http: aiohttp.ClientSession, geocoded_intake: str, operator: Operator
) -> None:
    body = task_body(
        pickup={"address": "1 Kitchen Lane, Dunedin"},
        dropoffs=[{"address": "宁波市 中山西路 12号", "recipient_name": "Dan"}],
    )
    status, created, _ = await submit(http, geocoded_intake, operator, body)
    assert status == 201, created
    async with http.get(f"{geocoded_intake}/v1/tasks/{created['id']}", headers=operator.headers) as response:
        task = await response.json()
    assert (task["pickup"]["lat"], task["pickup"]["lon"]) == (-45.8741, 170.5036)
    assert task["pickup"]["address"] == "1 Kitchen Lane, Dunedin"
    assert (task["legs"][0]["dropoff"]["lat"], task["legs"][0]["dropoff"]["recipient_name"]) == (
        29.8733,
        "Dan",
    )


async def test_a_place_address_is_geocoded(
    http: aiohttp.ClientSession, geocoded_intake: str, operator: Operator
) -> None:
    status, place = await post(
        http,
        f"{geocoded_intake}/v1/places",
        operator,
        {"name": "Kitchen", "address": "1 Kitchen Lane, Dunedin"},
    )
    assert status == 201 and (place["lat"], place["lon"]) == (-45.8741, 170.5036)


async def test_an_address_the_geocoder_does_not_know_is_refused_naming_the_field(
    http: aiohttp.ClientSession, geocoded_intake: str, operator: Operator
) -> None:
    body = task_body(dropoffs=[{"lat": 1.0, "lon": 1.0}, {"address": "nowhere at all"}])
    status, problem, _ = await submit(http, geocoded_intake, operator, body)
    assert status == 422, problem
    assert problem["errors"] == [
        {"field": "$.dropoffs[1].address", "message": ADDRESS_NOT_FOUND, "type": "location_missing"}
    ]


@pytest.mark.parametrize("mode", ["slow", "error", "garbage"])
async def test_a_geocoder_that_is_down_slow_or_garbled_is_a_retryable_503_never_a_500(
    http: aiohttp.ClientSession, geocoded_intake: str, operator: Operator, nominatim: Nominatim, mode: str
) -> None:
    nominatim.mode = mode
    started = asyncio.get_running_loop().time()
    status, problem = await post(
        http,
        f"{geocoded_intake}/v1/recipients",
        operator,
        {"name": "Eve", "address": "1 Kitchen Lane, Dunedin"},
    )
    assert status == 503, problem
    assert problem["title"] == "Service unavailable" and "Try again" in problem["detail"]
    assert asyncio.get_running_loop().time() - started < 3  # the 0.5 s timeout, not the server's 5 s
    status, problem, _ = await submit(
        http, geocoded_intake, operator, task_body(pickup={"address": "1 Kitchen Lane, Dunedin"})
    )
    assert status == 503, problem
    # Nothing was cached from a failure: once the geocoder is back, the address is found.
    nominatim.mode = "ok"
    status, created = await post(
        http,
        f"{geocoded_intake}/v1/recipients",
        operator,
        {"name": "Eve", "address": "1 Kitchen Lane, Dunedin"},
    )
    assert status == 201 and created["lat"] == -45.8741
