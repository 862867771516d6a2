"""The CSV export over HTTP and from the command line: a row per leg, the time range, the organisation's
scope, volunteers by role, the formula guard, and no personal data."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.adapters.tables import LegRow, TaskRow
from services.intake.domain.export import COLUMNS
from tests.client import bearer
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body

PERSONAL = ("Aroha", "+6421000111", "ben@example.org", "Depot", "+64 3 477 0000", "ring twice")


def _window(minutes: int = 10) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "from": (now - timedelta(minutes=minutes)).isoformat(),
        "to": (now + timedelta(minutes=minutes)).isoformat(),
    }


async def _export(
    http: aiohttp.ClientSession, intake: str, headers: dict[str, str], params: dict[str, str]
) -> tuple[int, str, Any]:
    async with http.get(f"{intake}/v1/exports/tasks.csv", params=params, headers=headers) as response:
        return response.status, await response.text(), response.headers


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def _tasks(
    http: aiohttp.ClientSession, intake: str, operator: Operator, count: int = 2
) -> list[dict[str, Any]]:
    created = []
    for _ in range(count):
        body = task_body(notes="ring twice")
        status, task, _ = await submit(http, intake, operator, body)
        assert status == 201, task
        created.append(task)
    return created


async def test_the_export_has_a_row_per_leg_with_task_columns_and_no_personal_data(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tasks = await _tasks(http, intake, operator)
    volunteer = uuid.uuid4()
    first_leg = uuid.UUID(tasks[0]["legs"][0]["id"])
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(LegRow)
            .where(LegRow.id == first_leg)
            .values(
                volunteer_id=volunteer,
                volunteer_name="=HYPERLINK(1)",
                status="assigned",
                transitions={"offered": "2026-12-06T10:00:00+00:00", "assigned": "2026-12-06T10:01:00+00:00"},
            )
        )

    status, text, headers = await _export(http, intake, operator.headers, _window())

    assert status == 200, text
    assert headers["Content-Type"].startswith("text/csv")
    assert text.splitlines()[0].split(",") == list(COLUMNS)
    rows = _rows(text)
    expected = {leg["id"] for task in tasks for leg in task["legs"]}
    assert {row["leg_id"] for row in rows} == expected
    assert len(rows) == 4
    by_leg = {row["leg_id"]: row for row in rows}
    first = by_leg[str(first_leg)]
    assert first["task_id"] == tasks[0]["id"]
    assert first["kind"] == "supply_run" and first["priority"] == "routine"
    assert first["leg_status"] == "assigned"
    assert first["offered_at"] == "2026-12-06T10:00:00+00:00"
    assert first["assigned_at"] == "2026-12-06T10:01:00+00:00"
    assert first["delivered_at"] == ""
    # -45.87,170.50 to -45.88,170.51: about 1.4 km.
    assert 1.2 < float(first["distance_km"]) < 1.6
    assert first["district"]  # the nearest district centre (far from Ningbo, but still named)
    # Operators see the masked name the read model keeps, guarded against spreadsheet formulas.
    assert first["volunteer"] == "'=HYPERLINK(1)"
    for secret in PERSONAL:
        assert secret not in text


async def test_the_export_keeps_to_the_time_range(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    old, new = await _tasks(http, intake, operator)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(TaskRow)
            .where(TaskRow.id == uuid.UUID(old["id"]))
            .values(created_at=datetime.now(UTC) - timedelta(days=3))
        )

    _, text, _ = await _export(http, intake, operator.headers, _window())
    assert {row["task_id"] for row in _rows(text)} == {new["id"]}

    three_days = {
        "from": (datetime.now(UTC) - timedelta(days=4)).isoformat(),
        "to": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
    }
    _, text, _ = await _export(http, intake, operator.headers, three_days)
    assert {row["task_id"] for row in _rows(text)} == {old["id"]}


async def test_operators_see_their_organisation_only_and_ops_see_all_with_volunteer_ids(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    demo_tokens: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from errands import admin

    other_org = await admin.new_organisation(stack.settings(), f"org-{uuid.uuid4().hex[:8]}")
    other = Operator(uuid.UUID(other_org["id"]), other_org["operator_token"])
    mine = await _tasks(http, intake, operator, count=1)
    theirs = await _tasks(http, intake, other, count=1)
    volunteer = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(LegRow)
            .where(LegRow.id == uuid.UUID(theirs[0]["legs"][0]["id"]))
            .values(volunteer_id=volunteer, volunteer_name="Li W.")
        )

    _, text, _ = await _export(http, intake, operator.headers, _window())
    assert {row["task_id"] for row in _rows(text)} == {mine[0]["id"]}

    status, text, _ = await _export(http, intake, bearer(demo_tokens["ops_token"]), _window())
    assert status == 200
    rows = _rows(text)
    assert {mine[0]["id"], theirs[0]["id"]} <= {row["task_id"] for row in rows}
    assert {row["organisation_id"] for row in rows} >= {str(operator.organisation_id), other_org["id"]}
    by_leg = {row["leg_id"]: row for row in rows}
    assert by_leg[theirs[0]["legs"][0]["id"]]["volunteer"] == str(volunteer)
    assert "Li W." not in text


async def test_a_reversed_range_is_empty_and_a_missing_bound_a_problem(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    window = _window()
    status, text, _ = await _export(
        http, intake, operator.headers, {"from": window["to"], "to": window["from"]}
    )
    assert status == 200 and text.splitlines() == [",".join(COLUMNS)]
    status, text, _ = await _export(http, intake, operator.headers, {"to": window["to"]})
    assert status == 400 and "from" in text
    status, _, _ = await _export(http, intake, {}, window)
    assert status == 401


async def test_the_command_line_writes_the_same_export(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    tasks = await _tasks(http, intake, operator)
    window = _window()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "errands",
            "export",
            "--from",
            window["from"],
            "--to",
            window["to"],
            "--organisation",
            str(operator.organisation_id),
        ],
        env={
            **os.environ,
            "DATABASE_URL": stack.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert {row["leg_id"] for row in rows} == {leg["id"] for task in tasks for leg in task["legs"]}
    assert "errands export: 4 legs" in done.stderr
    for secret in PERSONAL:
        assert secret not in done.stdout
    _, over_http, _ = await _export(http, intake, operator.headers, window)
    assert done.stdout == over_http.replace("\r\n", "\n")  # text mode reads CRLF as LF

    bad = subprocess.run(
        [sys.executable, "-m", "errands", "export", "--from", "yesterday", "--to", window["to"]],
        env={**os.environ, "DATABASE_URL": stack.database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
