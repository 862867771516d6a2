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
