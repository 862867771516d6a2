"""The console's client of the dispatcher, against a real local HTTP server: it sends the person's
session cookie and CSRF token and nothing else of theirs, and only ever to the dispatcher's address."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from services.intake.entrypoints.console.common import DispatcherClient, Staff
from shared.auth import Role
from shared.staff import CSRF_HEADER, SESSION_COOKIE

STAFF = Staff(uuid.uuid4(), "a@example.org", Role.OPERATOR, uuid.uuid4(), "csrf-token")


@pytest.fixture
async def dispatcher() -> AsyncIterator[tuple[TestServer, list[web.Request]]]:
    seen: list[web.Request] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    server = TestServer(app)
    await server.start_server()
    yield server, seen
    await server.close()


def _request() -> web.Request:
    cookies = f"{SESSION_COOKIE}=secret; lang=en; other_site_cookie=keep-me-home"
    return make_mocked_request("GET", "/console/volunteers", headers={"Cookie": cookies})


async def _client(base: str) -> tuple[DispatcherClient, AsyncIterator[None]]:
    client = DispatcherClient(base, timeout_s=5)
    context = client.context(web.Application())
    await anext(context)
    return client, context


async def test_only_the_session_cookie_and_csrf_token_go_to_the_dispatcher(
    dispatcher: tuple[TestServer, list[web.Request]],
) -> None:
    server, seen = dispatcher
    client, context = await _client(str(server.make_url("")))
    try:
        answer = await client.call(_request(), STAFF, "GET", "/v1/volunteers?limit=1")
    finally:
        await anext(context, None)
    assert answer.ok and answer.body == {"items": []}
    (request,) = seen
    assert request.headers["Cookie"] == f"{SESSION_COOKIE}=secret"
    assert request.headers[CSRF_HEADER] == "csrf-token"


@pytest.mark.parametrize("path", ["@127.0.0.1:1/v1/x", "//127.0.0.1:1/v1/x", "v1/x", "/\\127.0.0.1/v1"])
async def test_a_path_that_is_not_the_dispatchers_is_refused_without_a_connection(
    dispatcher: tuple[TestServer, list[web.Request]], path: str
) -> None:
    server, seen = dispatcher
    # The base address has a user-info-free host: a path starting with `@` would turn it into a
    # user name and send the session to the host after the `@`.
    client, context = await _client(f"http://{server.host}:{server.port}")
    try:
        answer = await client.call(_request(), STAFF, "GET", path)
    finally:
        await anext(context, None)
    assert not answer.ok and answer.status == 502
    assert seen == []
