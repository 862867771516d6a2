"""The HTTP plumbing every service shares, on a small application of its own (no database, no broker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError

from shared.http import (
    PROBLEM_JSON,
    Api,
    ProblemAppRunner,
    create_base_app,
    json_response,
    parse_body,
    parse_query,
    request_middleware,
)

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

api = Api(title="Plumbing under test")


class NoteIn(BaseModel):
    text: str


@api.route("POST", "/v1/notes", summary="Take a note", body=NoteIn, status=201)
async def post_note(request: web.Request) -> web.Response:
    body = await parse_body(request, NoteIn)
    return json_response(body, status=201)


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_base_app(api=api, readiness=[]))


async def test_a_method_the_route_does_not_take_is_a_405_problem_naming_the_allowed_ones(
    client: Client,
) -> None:
    response = await client.delete("/v1/notes")
    assert response.status == 405
    assert response.content_type == PROBLEM_JSON
    assert (await response.json())["status"] == 405
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_a_json_body_not_declared_as_json_is_a_415_problem(client: Client, content_type: str) -> None:
    response = await client.post(
        "/v1/notes", data='{"text": "hello"}', headers={"Content-Type": content_type}
    )
    assert response.status == 415
    assert response.content_type == PROBLEM_JSON
    assert (await response.json())["status"] == 415


async def test_a_json_body_without_a_content_type_is_a_415_problem(
    client: Client,
) -> None:
    response = await client.post("/v1/notes", data=b'{"text": "hello"}')
    assert response.status == 415


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_media_types_with_parameters_are_taken(client: Client, content_type: str) -> None:
    response = await client.post(
        "/v1/notes", data='{"text": "hello"}', headers={"Content-Type": content_type}
    )
    assert response.status == 201, await response.text()
    assert await response.json() == {"text": "hello"}


async def test_the_contract_documents_415_on_every_operation_that_takes_a_body(
    client: Client,
) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert "415" in document["paths"]["/v1/notes"]["post"]["responses"]


async def test_a_request_too_big_for_aiohttp_to_read_is_a_400_problem_that_does_not_echo_it() -> None:
    # Refused by aiohttp's parser before any middleware; the application runner's server answers it.
    runner = ProblemAppRunner(create_base_app(api=api, readiness=[]), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Secret: " + b"s" * 9000 + b"\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
    finally:
        await runner.cleanup()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    assert f"Content-Type: {PROBLEM_JSON}".encode() in head, head
    problem = json.loads(body)
    assert problem["status"] == 400
    assert "sss" not in problem["detail"]


async def test_a_query_parameter_given_twice_is_a_400_problem_naming_it(aiohttp_client: MakeClient) -> None:
    class PageQuery(BaseModel):
        limit: int = 10

    async def page(request: web.Request) -> web.Response:
        return json_response(parse_query(request, PageQuery))

    app = web.Application(middlewares=[request_middleware])
    app.router.add_get("/page", page)
    client = await aiohttp_client(app)
    assert (await client.get("/page?limit=5")).status == 200
    response = await client.get("/page?limit=5&limit=500")
    assert response.status == 400
    assert (await response.json())["errors"] == [
        {"field": "limit", "message": "given more than once", "type": "repeated"}
    ]


def test_a_raw_body_and_a_raw_answer_are_documented_as_binary_of_their_media_types() -> None:
    raw = Api(title="Raw bodies")

    @raw.route("POST", "/things/{thing_id}/pictures", summary="upload", raw_body=("image/png", "image/jpeg"))
    async def upload(request: web.Request) -> web.Response:
        return web.Response()

    @raw.route("GET", "/things/{thing_id}/picture", summary="fetch", raw_response=("image/png",))
    async def fetch(request: web.Request) -> web.Response:
        return web.Response()

    document = raw.document()
    posted = document["paths"]["/things/{thing_id}/pictures"]["post"]
    binary = {"schema": {"type": "string", "format": "binary"}}
    assert posted["requestBody"] == {"required": True, "content": {"image/png": binary, "image/jpeg": binary}}
    assert {"413", "415", "422"} <= set(posted["responses"])
    fetched = document["paths"]["/things/{thing_id}/picture"]["get"]
    assert fetched["responses"]["200"]["content"] == {"image/png": binary}
    assert "requestBody" not in fetched and "415" not in fetched["responses"]


async def test_a_transaction_lost_to_a_deadlock_is_a_503_to_send_again_not_a_500(
    aiohttp_client: MakeClient,
) -> None:
    async def contended(request: web.Request) -> web.Response:
        driver = asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        adapter = RuntimeError(str(driver))
        adapter.__cause__ = driver
        raise DBAPIError("SELECT 1 FOR UPDATE", {}, adapter)

    app = web.Application(middlewares=[request_middleware])
    app.router.add_post("/contended", contended)
    client = await aiohttp_client(app)
    response = await client.post("/contended")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert response.content_type == PROBLEM_JSON
    assert "nothing was changed" in (await response.json())["detail"]
