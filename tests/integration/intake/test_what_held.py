"""What held when two organisations were tested against each other, kept held.

Each of these was tried from outside and refused; each refusal is pinned here so it stays so.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import asyncpg
import pytest

from errands import admin
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body

MALFORMED_AUTHORIZATION = [
    "Bearer",
    "Bearer ",
    "Bearer  ",
    "bearer",
    "Basic dXNlcjpwYXNz",
    "Token abc",
    "Bearer a b",
    "Bearer " + "x" * 8000,
    "Bearer erk_operator_",
    "Bearer erk_admin_" + "0" * 64,
    "Bearer \u00e9\u00e8",
    "Bearer ../../etc/passwd",
    "Bearer ' OR '1'='1",
    "Bearer null",
]


async def _tasks_count(stack: Stack, organisation_id: uuid.UUID) -> int:
    connection = await asyncpg.connect(stack.database_url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM intake.tasks WHERE organisation_id = $1", organisation_id
        )
        return count
    finally:
        await connection.close()


async def test_twenty_parallel_submissions_with_one_key_make_one_task(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    key = str(uuid.uuid4())
    results = await asyncio.gather(*(submit(http, intake, operator, task_body(), key=key) for _ in range(20)))
    assert {status for status, _, _ in results} <= {201, 409}
    assert await _tasks_count(stack, operator.organisation_id) == 1


async def test_one_idempotency_key_in_two_organisations_makes_a_task_in_each(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    other = await admin.new_organisation(stack.settings(), f"org-{uuid.uuid4().hex[:8]}")
    second = Operator(uuid.UUID(other["id"]), other["operator_token"])
    key = str(uuid.uuid4())
    first_status, first, _ = await submit(http, intake, operator, task_body(), key=key)
    second_status, second_task, _ = await submit(http, intake, second, task_body(), key=key)
    assert (first_status, second_status) == (201, 201)
    assert first["id"] != second_task["id"], "a key belongs to one organisation, not to everyone"


@pytest.mark.parametrize("parameter", ["access_token", "token", "bearer", "api_key"])
async def test_a_token_in_the_query_string_is_refused(
    http: aiohttp.ClientSession, intake: str, operator: Operator, parameter: str
) -> None:
    async with http.get(f"{intake}/v1/tasks", params={parameter: operator.token}) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"


@pytest.mark.parametrize("authorization", MALFORMED_AUTHORIZATION)
async def test_a_malformed_authorization_header_is_a_401_problem(
    http: aiohttp.ClientSession, intake: str, authorization: str
) -> None:
    async with http.get(f"{intake}/v1/tasks", headers={"Authorization": authorization}) as response:
        assert response.status in (400, 401), response.status
        assert response.content_type == "application/problem+json"


async def test_an_organisation_id_in_a_task_is_refused_not_obeyed(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    elsewhere = uuid.uuid4()
    status, problem, _ = await submit(http, intake, operator, task_body(organisation_id=str(elsewhere)))
    assert status == 422
    assert "$.organisation_id" in [error["field"] for error in problem["errors"]]
    assert await _tasks_count(stack, elsewhere) == 0
