"""The location stream: a volunteer's app sends fixes on one WebSocket, into the same buffer as HTTP.

The first tests drive the running dispatcher (auth before the upgrade, fixes reaching the row and the
topic, problems that keep the connection open, arrays, the size cap, acknowledgements). The last ones
run the route in this process against a stub token check, for what the shared system cannot show
cheaply: its rate limit, a full buffer, and the close at shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.entrypoints.location_stream import (
    LOCATION_STREAMS,
    LOCATIONS,
    STREAM_MAX_FIXES_PER_MESSAGE,
    STREAM_MAX_MESSAGE_BYTES,
    LocationStreams,
    location_stream,
)
from services.dispatcher.service_layer.locations import Fix, LocationBuffer
from shared.auth import Principal, RateLimiter, Role
from shared.http import ProblemError, request_middleware
from shared.runtime import RUNTIME, Runtime
from tests.client import bearer
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, somewhere
from tests.integration.dispatcher.test_location_reports import _location_events, _stored

Maker = async_sessionmaker[AsyncSession]
PATH = "/v1/me/location/stream"


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


def _upgrade_headers() -> dict[str, str]:
    """A WebSocket handshake by hand, so a refusal's body can be read (ws_connect only raises)."""
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }


async def _next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def _until_accepted(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """Messages received until an acknowledgement of `count` fixes (acks are cumulative)."""
    received = []
    while True:
        body = await _next_json(ws)
        received.append(body)
        if body == {"accepted": count}:
            return received
        assert "status" in body or body["accepted"] < count, received


@pytest.mark.e2e
async def test_the_upgrade_is_refused_like_any_route_without_a_volunteers_token(client: Client) -> None:
    operator = await client.organisation()
    _, token = await client.volunteer(operator, somewhere())
    url = client.dispatcher + PATH
    for headers, status in (
        ({}, 401),
        (bearer("erk_vol_nonsense"), 401),
        (bearer(operator), 403),
        (bearer(client.admin_token), 403),
    ):
        async with client.http.get(url, headers={**_upgrade_headers(), **headers}) as response:
            assert response.status == status
            assert response.content_type == "application/problem+json"
            assert (await response.json())["status"] == status
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.http.ws_connect(url, headers=bearer(operator))
    assert refused.value.status == 403
    # A volunteer's plain GET is not a WebSocket handshake.
    async with client.http.get(url, headers=bearer(token)) as response:
        assert response.status == 426
        assert response.headers["Upgrade"] == "websocket"
        assert (await response.json())["title"] == "Upgrade required"


@pytest.mark.e2e
async def test_fixes_on_the_stream_reach_the_volunteer_row_and_the_topic_like_reports_over_http(
    client: Client, stack: Stack, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    new_lat, new_lon = place[0] + 0.01, place[1] + 0.01
    at = datetime.now(UTC)
    async with client.http.ws_connect(client.dispatcher + PATH, headers=bearer(token)) as ws:
        await ws.send_json({"lat": new_lat, "lon": new_lon, "accuracy_m": 7, "at": at.isoformat()})
        assert await _next_json(ws) == {"accepted": 1}
        for _ in range(100):
            row = await _stored(sessionmaker, volunteer_id)
            if row.lat == new_lat:
                break
            await asyncio.sleep(0.05)
        assert (row.lat, row.lon, row.location_at) == (new_lat, new_lon, at)
        # An older fix is taken (acknowledged) but never overwrites the newer one, as over HTTP.
        older = (at - timedelta(seconds=30)).isoformat()
        await ws.send_json({"lat": place[0] - 1, "lon": place[1], "at": older})
        assert await _next_json(ws) == {"accepted": 2}
    await asyncio.sleep(0.5)  # ten flush intervals
    row = await _stored(sessionmaker, volunteer_id)
    assert (row.lat, row.location_at) == (new_lat, at), "an older fix never overwrites a newer one"

    events = await _location_events(stack.kafka_bootstrap, volunteer_id, want_lat=new_lat)
    reported = [{k: v for k, v in event.data.items() if k != "at"} for event in events]
    assert {"volunteer_id": volunteer_id, "lat": new_lat, "lon": new_lon, "accuracy_m": 7.0} in reported
    assert all(data["lat"] != place[0] - 1 for data in reported), "the stale fix is not published"


@pytest.mark.e2e
async def test_a_bad_message_gets_a_problem_naming_the_field_and_the_stream_goes_on(client: Client) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    async with client.http.ws_connect(client.dispatcher + PATH, headers=bearer(token)) as ws:
        await ws.send_json({"lat": 91, "lon": 0})
        problem = await _next_json(ws)
        assert problem["status"] == 422 and problem["title"] == "Validation failed"
        assert problem["type"].endswith("/validation-failed")
        assert [e["field"] for e in problem["errors"]] == ["$.lat"]
        assert problem["accepted"] == 0

        await ws.send_json({"lat": 1, "lon": 0, "at": "2026-01-01T00:00:00"})  # no time zone
        assert [e["field"] for e in (await _next_json(ws))["errors"]] == ["$.at"]
        await ws.send_json({"lat": 1, "lon": 0, "at": "0001-01-01T00:00:00+23:59"})  # year 0 in UTC
        assert [e["field"] for e in (await _next_json(ws))["errors"]] == ["$.at"]
        await ws.send_json([{"lat": 1, "lon": 0}, {"lat": 1, "lon": 0, "at": "2000-01-01T00:00:00Z"}])
        assert [e["field"] for e in (await _next_json(ws))["errors"]] == ["$[1].at"]
        await ws.send_json({"lat": 1, "lon": 0, "speed": 3})
        assert [e["field"] for e in (await _next_json(ws))["errors"]] == ["$.speed"]
        await ws.send_str("{not json")
        problem = await _next_json(ws)
        assert (problem["status"], problem["title"]) == (400, "Bad request")
        assert "message is not valid JSON" in problem["detail"]
        await ws.send_json([])
        assert [e["field"] for e in (await _next_json(ws))["errors"]] == ["$"]
        await ws.send_json([{"lat": 1, "lon": 0}] * (STREAM_MAX_FIXES_PER_MESSAGE + 1))
        assert [e["type"] for e in (await _next_json(ws))["errors"]] == ["too_long"]
        await ws.send_json("a string")
        assert (await _next_json(ws))["status"] == 422

        await ws.send_json({"lat": place[0], "lon": place[1]})
        assert await _next_json(ws) == {"accepted": 1}, "the connection is still usable"
        assert not ws.closed


@pytest.mark.e2e
async def test_an_array_message_is_taken_whole_or_refused_whole(client: Client, sessionmaker: Maker) -> None:
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    # Fixes an app buffered offline: newer than the one `volunteer()` reported, and all in the past.
    now = datetime.now(UTC)
    await asyncio.sleep(0.5)
    backlog = [
        {"lat": place[0] + i * 0.001, "lon": place[1], "at": (now + timedelta(seconds=i / 10)).isoformat()}
        for i in range(5)
    ]
    async with client.http.ws_connect(client.dispatcher + PATH, headers=bearer(token)) as ws:
        await ws.send_json([*backlog[:2], {"lat": 0, "lon": 181}, backlog[3]])
        problem = await _next_json(ws)
        assert [e["field"] for e in problem["errors"]] == ["$[2].lon"]
        assert problem["accepted"] == 0, "nothing of a refused message is taken"

        await ws.send_json(backlog)
        assert await _next_json(ws) == {"accepted": 5}
    newest = backlog[-1]
    for _ in range(100):
        row = await _stored(sessionmaker, volunteer_id)
        if row.lat == newest["lat"]:
            break
        await asyncio.sleep(0.05)
    assert (row.lat, row.location_at) == (newest["lat"], datetime.fromisoformat(str(newest["at"])))


@pytest.mark.e2e
async def test_oversized_and_binary_messages_close_the_stream_with_their_codes(client: Client) -> None:
    operator = await client.organisation()
    _, token = await client.volunteer(operator, somewhere())
    url = client.dispatcher + PATH
    async with client.http.ws_connect(url, headers=bearer(token)) as ws:
        await ws.send_str(json.dumps({"lat": 1, "lon": 1, "pad": "x" * STREAM_MAX_MESSAGE_BYTES}))
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert ws.close_code == WSCloseCode.MESSAGE_TOO_BIG
    async with client.http.ws_connect(url, headers=bearer(token)) as ws:
        await ws.send_bytes(b'{"lat": 1, "lon": 1}')
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert ws.close_code == WSCloseCode.UNSUPPORTED_DATA


@pytest.mark.e2e
async def test_acknowledgements_are_cumulative_and_batched(client: Client) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    async with client.http.ws_connect(client.dispatcher + PATH, headers=bearer(token)) as ws:
        for i in range(200):
            await ws.send_json({"lat": place[0], "lon": place[1] + i * 1e-5})
        received = await _until_accepted(ws, 200)
        counts = [body["accepted"] for body in received]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
        assert len(received) < 50, f"one acknowledgement per fix: {counts}"
        await ws.send_json([{"lat": place[0], "lon": place[1]}] * 3)
        assert await _next_json(ws) == {"accepted": 203}


# --- the route in this process, with a stub token check: rate limit, full buffer, shutdown


@dataclass
class _Tokens:
    volunteer_id: uuid.UUID

    async def verify(self, authorization: str | None) -> Principal:
        if authorization != "Bearer good":
            raise ProblemError(401, "Unauthorized", "The token is not valid.")
        return Principal(token_id=uuid.uuid4(), role=Role.VOLUNTEER, volunteer_id=self.volunteer_id)

    async def until_revoked(self, authorization: str | None) -> None:
        await asyncio.Event().wait()  # never: revocation has its own tests (tests/e2e/test_revocation.py)


@dataclass
class _Runtime:
    tokens: _Tokens


@dataclass
class _Route:
    url: str
    buffer: LocationBuffer
    streams: LocationStreams
    volunteer_id: uuid.UUID


@pytest.fixture
async def route() -> AsyncIterator[_Route]:
    app = web.Application(middlewares=[request_middleware])
    volunteer_id = uuid.uuid4()
    app[RUNTIME] = cast(Runtime, _Runtime(_Tokens(volunteer_id)))  # the route needs only its tokens
    buffer = app[LOCATIONS] = LocationBuffer(capacity=1)
    streams = app[LOCATION_STREAMS] = LocationStreams(limiter=RateLimiter(per_s=1, burst=3))
    app.router.add_get(PATH, location_stream)
    server = TestServer(app)
    await server.start_server()
    try:
        yield _Route(str(server.make_url(PATH)), buffer, streams, volunteer_id)
    finally:
        await server.close()


async def test_an_app_sending_faster_than_its_budget_gets_429s_for_the_messages_not_taken(
    route: _Route,
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(route.url, headers=bearer("good")) as ws,
    ):
        for _ in range(5):
            await ws.send_json({"lat": 1, "lon": 2})
        received = await _until_accepted(ws, 3)
        while len([b for b in received if b.get("status") == 429]) < 2:
            received.append(await _next_json(ws))
        problems = [b for b in received if "status" in b]
        assert [(p["status"], p["retry_after"]) for p in problems] == [(429, 1), (429, 1)]
        assert all(p["accepted"] <= 3 for p in problems)


async def test_a_full_buffer_refuses_a_message_with_503_and_the_stream_goes_on(route: _Route) -> None:
    route.buffer.add(uuid.uuid4(), Fix(lat=0, lon=0, accuracy_m=None, at=datetime.now(UTC)))  # capacity 1
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(route.url, headers=bearer("good")) as ws,
    ):
        await ws.send_json([{"lat": 1, "lon": 2}, {"lat": 1, "lon": 3}])
        problem = await _next_json(ws)
        assert (problem["status"], problem["retry_after"], problem["accepted"]) == (503, 1, 0)
        route.buffer.done(route.buffer.take())  # the flusher wrote it
        await ws.send_json({"lat": 1, "lon": 2})
        assert await _next_json(ws) == {"accepted": 1}
    assert list(route.buffer.take()) == [route.volunteer_id]


async def test_stopping_sends_the_last_acknowledgement_then_closes_with_going_away(route: _Route) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(route.url, headers=bearer("good")) as ws:
            await ws.send_json({"lat": 1, "lon": 2})
            assert await _next_json(ws) == {"accepted": 1}
            await ws.send_json({"lat": 1, "lon": 3})
            await asyncio.sleep(0.02)  # taken, but inside the acknowledgement interval
            # As at shutdown; it waits for the app's answer to the close, so the app must be reading.
            closing = asyncio.create_task(route.streams.close())
            assert await _next_json(ws) == {"accepted": 2}
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY)
            await asyncio.wait_for(closing, timeout=2)
            assert ws.close_code == WSCloseCode.GOING_AWAY, "a clean close handshake"
        assert len(route.streams) == 0
        async with http.get(route.url, headers={**_upgrade_headers(), **bearer("good")}) as response:
            assert response.status == 503, "a stopping process takes no new streams"


def _protocols(*offered: str) -> dict[str, str]:
    return {**_upgrade_headers(), "Sec-WebSocket-Protocol": ", ".join(offered)}


@pytest.mark.e2e
async def test_a_browser_offers_its_token_as_a_subprotocol_and_only_errands_v1_is_echoed(
    client: Client, sessionmaker: Maker
) -> None:
    """Browsers cannot set `Authorization` on a handshake: the token rides in `Sec-WebSocket-Protocol`."""
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    other_operator = await client.organisation()
    other_id, other_token = await client.volunteer(other_operator, place)
    url = client.dispatcher + PATH

    async with client.http.ws_connect(url, protocols=("errands.v1", f"bearer.{token}")) as ws:
        assert ws.protocol == "errands.v1", "the token is never echoed back"
        await ws.send_json({"lat": place[0] + 0.02, "lon": place[1]})
        assert await _next_json(ws) == {"accepted": 1}
    for _ in range(100):
        if (await _stored(sessionmaker, volunteer_id)).lat == place[0] + 0.02:
            break
        await asyncio.sleep(0.05)
    assert (await _stored(sessionmaker, volunteer_id)).lat == place[0] + 0.02

    # Another organisation's volunteer moves only themselves; its operator may not open the stream.
    async with client.http.ws_connect(url, protocols=("errands.v1", f"bearer.{other_token}")) as ws:
        await ws.send_json({"lat": place[0] - 0.02, "lon": place[1]})
        assert await _next_json(ws) == {"accepted": 1}
    for _ in range(100):
        if (await _stored(sessionmaker, other_id)).lat == place[0] - 0.02:
            break
        await asyncio.sleep(0.05)
    assert (await _stored(sessionmaker, other_id)).lat == place[0] - 0.02
    assert (await _stored(sessionmaker, volunteer_id)).lat == place[0] + 0.02

    for offered, status in (
        (("errands.v1", "bearer.erk_vol_nonsense"), 401),
        ((f"bearer.{token}",), 401),  # without errands.v1
        (("errands.v1", f"bearer.{token}", f"bearer.{other_token}"), 401),
        (("errands.v1", f"bearer.{other_operator}"), 403),
        (("errands.v1",), 401),  # no token at all
    ):
        async with client.http.get(url, headers=_protocols(*offered)) as response:
            assert response.status == status, offered
            assert (await response.json())["status"] == status
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.http.ws_connect(url, protocols=("errands.v1", "bearer.erk_vol_nonsense"))
    assert refused.value.status == 401
