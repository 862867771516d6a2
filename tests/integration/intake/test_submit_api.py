"""`POST /v1/tasks` over real HTTP: idempotency under true concurrency, and malformed input of every kind."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from services.intake.adapters.repository import idempotency_lock_id
from services.intake.entrypoints.http import KEYS, api
from services.intake.service_layer.submission import Keys
from shared.http import create_base_app
from shared.runtime import RUNTIME, Runtime
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body


async def test_concurrent_duplicates_create_one_task_with_one_answer(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    key, body = str(uuid.uuid4()), task_body(external_ref=f"ref-{uuid.uuid4()}")
    results = await asyncio.gather(*(submit(http, intake, operator, body, key=key) for _ in range(12)))
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {201, 409}, statuses
    created = [task for status, task, _ in results if status == 201]
    assert created, "at least one request succeeds"
    assert all(task == created[0] for task in created), "every success is the same task, ids and codes"
    conflicts = [problem for status, problem, _ in results if status == 409]
    assert all(problem["status"] == 409 for problem in conflicts)

    connection = await asyncpg.connect(stack.database_url)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM intake.tasks WHERE organisation_id = $1 AND request->>'external_ref' = $2",
            operator.organisation_id,
            body["external_ref"],
        )
    finally:
        await connection.close()
    assert count == 1

    # Once the first has finished, every retry is the same answer, flagged as a replay.
    status, again, headers = await submit(http, intake, operator, body, key=key)
    assert (status, again) == (201, created[0])
    assert headers["Idempotent-Replayed"] == "true"


async def test_a_duplicate_while_the_first_is_in_flight_is_a_conflict(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    key = str(uuid.uuid4())
    connection = await asyncpg.connect(stack.database_url)
    try:
        # Hold the key's in-flight lock exactly as a running first request holds it.
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            "SELECT pg_advisory_xact_lock($1)", idempotency_lock_id(operator.organisation_id, key)
        )
        status, problem, _ = await submit(http, intake, operator, key=key)
        assert status == 409 and problem["title"] == "Conflict"
        await transaction.rollback()
    finally:
        await connection.close()
    status, _, headers = await submit(http, intake, operator, key=key)
    assert status == 201 and "Idempotent-Replayed" not in headers


async def test_same_key_with_another_body_is_refused_and_keys_are_per_organisation(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    from errands import admin

    key = str(uuid.uuid4())
    status, first, _ = await submit(http, intake, operator, key=key)
    assert status == 201
    status, problem, _ = await submit(http, intake, operator, task_body(priority="critical"), key=key)
    assert status == 422 and problem["errors"][0]["field"] == "header:Idempotency-Key"

    other = await admin.new_organisation(stack.settings(), "other")
    status, theirs, _ = await submit(
        http, intake, Operator(uuid.UUID(other["id"]), other["operator_token"]), key=key
    )
    assert status == 201 and theirs["id"] != first["id"]
    codes = [leg["confirmation_code"] for leg in first["legs"]]
    assert all(len(code) == 6 and code.isdigit() for code in codes)


async def raw_request(intake: str, request: bytes) -> tuple[int, str, bytes]:
    """Send bytes as they are (aiohttp's client would refuse or fix them) and read the answer."""
    address = urlsplit(intake)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers.get("content-type", ""), body


def post(operator: Operator, body: bytes, *, key: bytes = b"k-raw", auth: bytes | None = None) -> bytes:
    authorization = auth if auth is not None else f"Bearer {operator.token}".encode()
    return (
        b"POST /v1/tasks HTTP/1.1\r\nHost: intake\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Authorization: "
        + authorization
        + b"\r\nIdempotency-Key: "
        + key
        + b"-"
        + uuid.uuid4().hex.encode()
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


VALID = json.dumps(task_body()).encode()

MALFORMED: list[tuple[str, bytes, int, str | None]] = [
    (
        "latin-1 text",
        json.dumps(task_body(notes="café"), ensure_ascii=False).encode().replace("é".encode(), b"\xe9"),
        400,
        None,
    ),
    ("utf-16", json.dumps(task_body()).encode("utf-16"), 400, None),
    ("truncated", VALID[: len(VALID) // 2], 400, None),
    ("empty", b"", 400, None),
    ("not json", b"kind=meal", 400, None),
    ("an array", b"[]", 422, "$"),
    ("null", b"null", 422, "$"),
    ("a number", b"42", 422, "$"),
    ("a digit bomb", b'{"kind": "meal", "priority": ' + b"9" * 100_000 + b"}", 400, None),
    ("deep nesting", b'{"kind": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, None),
    ("deep objects", b'{"notes": ' + b'{"a": ' * 30_000 + b"1" + b"}" * 30_000 + b"}", 400, None),
    ("huge float", VALID.replace(b'"lat": -45.87', b'"lat": 1e999'), 422, "$.pickup.lat"),
    ("huge int", VALID.replace(b'"quantity": 500', b'"quantity": ' + b"9" * 400), 422, "$.items[0].quantity"),
    ("NaN", VALID.replace(b'"lat": -45.87', b'"lat": NaN'), 422, "$.pickup.lat"),
    (
        "NUL in text",
        VALID.replace(b'"address": "Depot"', b'"address": "De\\u0000pot"'),
        422,
        "$.pickup.address",
    ),
    (
        "lone surrogate",
        VALID.replace(b'"address": "Depot"', b'"address": "\\ud800"'),
        422,
        "$.pickup.address",
    ),
    ("wrong type list", VALID.replace(b'"items": [', b'"items": {"x": ['), 400, None),
    ("number as object", VALID.replace(b'"lat": -45.87', b'"lat": {"deg": 1}'), 422, "$.pickup.lat"),
    (
        "string bool",
        VALID.replace(b'"no_contact": true', b'"no_contact": "maybe"'),
        422,
        "$.dropoffs[1].no_contact",
    ),
    ("null dropoff", VALID.replace(b'"dropoffs": [', b'"dropoffs": [null, '), 422, "$.dropoffs[0]"),
    ("duplicate keys", b'{"kind": "meal", "kind": "boat"}', 422, "$.kind"),
    # Times a client can write that no service can store: year 10000 and year 0 once in UTC.
    (
        "deliver_by past year 9999",
        json.dumps(task_body(deliver_by="9999-12-31T23:59:59-23:59")).encode(),
        422,
        "$.deliver_by",
    ),
    (
        "ready_at before year 1",
        VALID.replace(b'"address": "Depot"', b'"address": "Depot", "ready_at": "0001-01-01T00:00:00+23:59"'),
        422,
        "$.pickup.ready_at",
    ),
    (
        "deliver_by in 2101",
        json.dumps(task_body(deliver_by="2101-01-01T00:00:00Z")).encode(),
        422,
        "$.deliver_by",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_malformed_bodies_get_a_problem_never_a_server_error(
    intake: str, operator: Operator, body: bytes, status: int, field: str | None
) -> None:
    got, content_type, raw = await raw_request(intake, post(operator, body))
    assert content_type.startswith("application/problem+json")
    problem = json.loads(raw)
    assert (got, problem["status"]) == (status, status), problem
    if field is not None:
        assert field in {error["field"] for error in problem["errors"]}, problem


async def test_a_body_over_256_kib_is_refused_with_413(intake: str, operator: Operator) -> None:
    body = json.dumps(task_body(notes="x" * (300 * 1024))).encode()
    status, content_type, raw = await raw_request(intake, post(operator, body))
    assert status == 413 and content_type.startswith("application/problem+json")
    assert json.loads(raw)["status"] == 413


@pytest.mark.parametrize(
    ("key", "auth", "status", "problem"),
    [
        (b"\xff\xfe", None, 400, True),
        (b"k" * 300, None, 400, True),
        (b"\x01", None, 400, True),  # refused by the HTTP parser, still answered as a problem
        (b"ok", b"Bearer \xff\xfe", 401, True),
        (b"ok", b"Basic dXNlcg==", 401, True),
        (b"ok", b"Bearer " + b"t" * 500, 401, True),
    ],
)
async def test_bad_headers_get_a_client_error_never_a_server_error(
    intake: str, operator: Operator, key: bytes, auth: bytes | None, status: int, problem: bool
) -> None:
    got, content_type, _ = await raw_request(intake, post(operator, VALID, key=key, auth=auth))
    assert got == status
    assert content_type.startswith("application/problem+json") == problem


async def test_the_idempotency_key_header_is_required(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    async with http.post(f"{intake}/v1/tasks", json=task_body(), headers=operator.headers) as response:
        assert response.status == 400
        problem: dict[str, Any] = await response.json(content_type=None)
    assert problem["errors"][0]["field"] == "header:Idempotency-Key"


@pytest.fixture
async def strict_intake(stack: Stack) -> AsyncIterator[str]:
    """Intake in this process with private callback URLs refused, as in production."""
    settings = stack.settings(webhook_allow_private_urls=False)
    app = create_base_app(api=api, readiness=[])
    app[RUNTIME] = Runtime.build(settings, client_id="intake-callback-test")
    app[KEYS] = Keys(code_key=settings.code_key, data_key=settings.data_key)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await app[RUNTIME].engine.dispose()


@pytest.mark.parametrize(
    "callback_url",
    [
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of 169.254.169.254
        "http://[2002:a9fe:a9fe::1]/cb",  # 6to4
        "http://[::ffff:0:a9fe:a9fe]/cb",  # SIIT
        "http://[fec0::1]/cb",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:8080/cb",
        "http://localhost/cb",
        "http://2130706433/cb",  # 127.0.0.1 as one number
    ],
)
async def test_a_callback_url_that_is_not_public_is_refused_at_submission(
    http: aiohttp.ClientSession, strict_intake: str, operator: Operator, callback_url: str
) -> None:
    status, problem, _ = await submit(http, strict_intake, operator, task_body(callback_url=callback_url))
    assert status == 422, problem
    assert [error["field"] for error in problem["errors"]] == ["$.callback_url"]


async def test_a_public_callback_url_is_taken_at_submission(
    http: aiohttp.ClientSession, strict_intake: str, operator: Operator
) -> None:
    status, task, _ = await submit(
        http, strict_intake, operator, task_body(callback_url="https://93.184.216.34/errands/cb")
    )
    assert status == 201, task
