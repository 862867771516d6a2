"""The HTTP plumbing every service shares, on a small application of its own (no database, no broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from shared.http import PROBLEM_JSON, Api, create_base_app, json_response, parse_body

api = Api(title="Plumbing under test")


class NoteIn(BaseModel):
    text: str


@api.route("POST", "/v1/notes", summary="Take a note", body=NoteIn, status=201)
async def post_note(request: web.Request) -> web.Response:
    body = await parse_body(request, NoteIn)
    return json_response(body, status=201)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_base_app(api=api, readiness=[]))) as client:
        yield client


async def test_a_method_the_route_does_not_take_is_a_405_problem_naming_the_allowed_ones(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.delete("/v1/notes")
    assert response.status == 405
    assert response.content_type == PROBLEM_JSON
    assert (await response.json())["status"] == 405
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_a_json_body_not_declared_as_json_is_a_415_problem(
    client: TestClient[web.Request, web.Application], content_type: str
) -> None:
    response = await client.post(
        "/v1/notes", data='{"text": "hello"}', headers={"Content-Type": content_type}
    )
    assert response.status == 415
    assert response.content_type == PROBLEM_JSON
    assert (await response.json())["status"] == 415


async def test_a_json_body_without_a_content_type_is_a_415_problem(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/v1/notes", data=b'{"text": "hello"}')
    assert response.status == 415


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_media_types_with_parameters_are_taken(
    client: TestClient[web.Request, web.Application], content_type: str
) -> None:
    response = await client.post(
        "/v1/notes", data='{"text": "hello"}', headers={"Content-Type": content_type}
    )
    assert response.status == 201, await response.text()
    assert await response.json() == {"text": "hello"}


async def test_the_contract_documents_415_on_every_operation_that_takes_a_body(
    client: TestClient[web.Request, web.Application],
) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert "415" in document["paths"]["/v1/notes"]["post"]["responses"]
