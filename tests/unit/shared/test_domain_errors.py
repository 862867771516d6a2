"""Domain errors are answered at the HTTP edge by one table per service, not by the code raising them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from shared.errors import COMMON_STATUSES, Answer, Conflict, DomainError, NotFound
from shared.http import PROBLEM_JSON, Api, create_base_app

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


class ParcelNotFound(NotFound):
    pass


class ParcelTooHeavy(DomainError):
    pass


class ParcelLost(DomainError):
    """A rule nobody gave an answer for."""


api = Api(title="Domain errors under test")


@api.route("GET", "/v1/parcels/{name}", summary="A parcel")
async def parcel(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == "missing":
        raise ParcelNotFound("No such parcel.")
    if name == "heavy":
        raise ParcelTooHeavy(
            "The parcel weighs 30 kg; a bicycle carries 15.", errors=[{"field": "$.weight_kg"}]
        )
    if name == "taken":
        raise Conflict("The parcel is already on its way.")
    raise ParcelLost("The parcel fell off the map.")


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    statuses = {**COMMON_STATUSES, ParcelTooHeavy: Answer(422, "Too heavy")}
    return await aiohttp_client(create_base_app(api=api, readiness=[], error_statuses=statuses))


@pytest.mark.parametrize(
    ("name", "status", "title", "detail"),
    [
        ("missing", 404, "Not found", "No such parcel."),
        ("heavy", 422, "Too heavy", "The parcel weighs 30 kg; a bicycle carries 15."),
        ("taken", 409, "Conflict", "The parcel is already on its way."),
    ],
)
async def test_a_domain_error_is_answered_as_its_table_says(
    client: Client, name: str, status: int, title: str, detail: str
) -> None:
    response = await client.get(f"/v1/parcels/{name}")
    assert response.status == status
    assert response.content_type == PROBLEM_JSON
    problem = await response.json()
    assert (problem["status"], problem["title"], problem["detail"]) == (status, title, detail)


async def test_the_fields_a_domain_error_names_reach_the_problem(client: Client) -> None:
    problem = await (await client.get("/v1/parcels/heavy")).json()
    assert problem["errors"] == [{"field": "$.weight_kg"}]


async def test_a_domain_error_without_an_answer_is_our_fault_and_says_nothing_more(client: Client) -> None:
    response = await client.get("/v1/parcels/lost")
    assert response.status == 500
    assert "map" not in (await response.json())["detail"]
