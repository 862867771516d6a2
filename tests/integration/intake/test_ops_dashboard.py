"""The ops dashboard against the live intake service and the database: the page, auth, snapshot, stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import Role, issue_token
from tests.client import bearer
from tests.integration.intake.conftest import Operator, submit

DATA_PATHS = ("/ops/snapshot", "/ops/stream")


async def snapshot(http: aiohttp.ClientSession, intake: str, token: str) -> dict[str, Any]:
    async with http.get(f"{intake}/ops/snapshot", headers=bearer(token)) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        body: dict[str, Any] = await response.json()
    return body


async def next_event(stream: aiohttp.ClientResponse, *, timeout_s: float = 30.0) -> dict[str, Any]:
    """The next `snapshot` event of a server-sent event stream (keep-alive comments skipped)."""
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await stream.content.readline()
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if line:
                lines.append(line)
                continue
            data = [entry[len("data: ") :] for entry in lines if entry.startswith("data: ")]
            kinds = [entry for entry in lines if entry.startswith("event: ")]
            lines = []
            if data:
                assert kinds == ["event: snapshot"]
                event: dict[str, Any] = json.loads("\n".join(data))
                return event


@pytest.fixture(scope="module")
async def volunteer_token(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker() as session, session.begin():
        _, token = await issue_token(
            session, role=Role.VOLUNTEER, organisation_id=None, volunteer_id=uuid.uuid4()
        )
    return token


async def test_the_page_carries_no_data_and_allows_only_its_own_script(
    http: aiohttp.ClientSession, intake: str
) -> None:
    async with http.get(f"{intake}/ops") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert "Authorization" in page and "#token" not in page.split("<script>")[0]
    assert "erk_ops_" not in page.replace("erk_ops_…", ""), "no token is ever baked into the page"
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", ""), "nothing loaded from elsewhere"
    assert "https://" not in page


@pytest.mark.parametrize("path", DATA_PATHS)
async def test_data_needs_an_ops_or_admin_token(
    http: aiohttp.ClientSession,
    intake: str,
    path: str,
    operator: Operator,
    volunteer_token: str,
    demo_tokens: dict[str, str],
) -> None:
    refusals = {
        "no token": ({}, 401),
        "not a bearer header": ({"Authorization": demo_tokens["ops_token"]}, 401),
        "unknown token": (bearer("erk_ops_" + "x" * 43), 401),
        "operator": (operator.headers, 403),
        "volunteer": (bearer(volunteer_token), 403),
    }
    for who, (headers, status) in refusals.items():
        async with http.get(f"{intake}{path}", headers=headers) as response:
            assert response.status == status, who
            assert response.content_type == "application/problem+json", who
    for role in ("ops_token", "admin_token"):
        async with http.get(f"{intake}{path}", headers=bearer(demo_tokens[role])) as response:
            assert response.status == 200, role
            if path == "/ops/stream":
                assert response.content_type == "text/event-stream"
                first = await next_event(response)
                assert set(first["tasks_by_status"]) >= {"submitted", "escalated", "completed"}


async def test_a_submitted_task_is_counted_and_its_legs_wait(
    http: aiohttp.ClientSession, intake: str, operator: Operator, demo_tokens: dict[str, str]
) -> None:
    ops = demo_tokens["ops_token"]
    before = await snapshot(http, intake, ops)
    status, task, _ = await submit(http, intake, operator)
    assert status == 201
    after = await snapshot(http, intake, ops)
    assert after["tasks_total"] == before["tasks_total"] + 1
    assert after["tasks_by_status"]["submitted"] == before["tasks_by_status"]["submitted"] + 1
    assert after["waiting_total"] == before["waiting_total"] + 2, "both legs wait for a volunteer"
    assert after["timings"][0]["name"] == "submission_to_offer"
    assert [d["name"] for d in after["map"]["districts"]][:2] == ["Haishu", "Jiangbei"]
    assert len(after["map"]["districts"]) == 11
    waiting = after["waiting"]
    assert [row["waiting_since"] for row in waiting] == sorted(row["waiting_since"] for row in waiting)
    assert all(row["status"] in ("pending", "offered") for row in waiting)
    assert datetime.fromisoformat(after["generated_at"]) >= datetime.fromisoformat(task["created_at"])


async def test_the_stream_sends_the_current_snapshot_then_each_change(
    http: aiohttp.ClientSession, intake: str, operator: Operator, demo_tokens: dict[str, str]
) -> None:
    async with http.get(
        f"{intake}/ops/stream",
        headers=bearer(demo_tokens["ops_token"]),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
    ) as stream:
        assert stream.status == 200
        assert stream.headers["Cache-Control"] == "no-store"
        first = await next_event(stream)
        status, _, _ = await submit(http, intake, operator)
        assert status == 201
        # Unrelated changes may come first; the submitted task shows up within a few events.
        for _ in range(20):
            update = await next_event(stream)
            if update["tasks_total"] > first["tasks_total"]:
                break
        else:
            raise AssertionError("the stream never showed the new task")
        assert update["tasks_total"] == first["tasks_total"] + 1
