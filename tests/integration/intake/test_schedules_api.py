"""Recurring deliveries over real HTTP and with the runner against the real database: each occurrence
becomes a task exactly once, whatever the replicas, retries and restarts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from services.intake.service_layer import schedules
from services.intake.service_layer.register import RegisterKeys
from services.intake.service_layer.submission import Keys
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, task_body

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def call(
    http: aiohttp.ClientSession, method: str, url: str, operator: Operator, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=operator.headers) as response:
        text_ = await response.text()
        return response.status, (await response.json(content_type=None)) if text_ else None


@pytest.fixture
async def stranger(stack: Stack) -> Operator:
    created = await admin.new_organisation(stack.settings(), f"other-{uuid.uuid4().hex[:8]}")
    return Operator(uuid.UUID(created["id"]), created["operator_token"])


def tomorrow_at(hour: int, minute: int) -> datetime:
    """Tomorrow's local wall-clock time in Shanghai: at least 12 hours ahead, beyond the live service's
    own lead time, so only the runs in these tests make its tasks."""
    day = datetime.now(SHANGHAI).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute)


def lunch(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Lunch for Mrs Wang",
        "rrule": "FREQ=DAILY",
        "dtstart": tomorrow_at(11, 30).isoformat(timespec="minutes"),
        "time_zone": "Asia/Shanghai",
        "task": task_body(kind="meal", notes="lunch"),
    }
    body.update(overrides)
    return body


async def new_schedule(http: aiohttp.ClientSession, intake: str, operator: Operator, **overrides: Any) -> Any:
    status, created = await call(http, "POST", f"{intake}/v1/schedules", operator, lunch(**overrides))
    assert status == 201, created
    return created


def runner(stack: Stack, **overrides: Any) -> Any:
    settings = stack.settings()
    values: dict[str, Any] = {
        "keys": Keys(code_key=settings.code_key, data_key=settings.data_key),
        "register_keys": RegisterKeys.from_data_key(settings.data_key),
        "geocoder": None,
        "lead_time_s": 0.0,
        "batch": 50,
    }
    return {**values, **overrides}


async def run_at(
    sessionmaker: async_sessionmaker[AsyncSession],
    stack: Stack,
    operator: Operator,
    now: datetime,
    **overrides: Any,
) -> int:
    """One run of the runner as a replica does it (its own transaction, committed), at `now`; answers
    how many tasks it made in the operator's organisation (it runs every organisation's schedules)."""
    before = await all_tasks(sessionmaker, operator.organisation_id)
    async with sessionmaker() as session, session.begin():
        await schedules.make_due_tasks(session, now=now, **runner(stack, **overrides))
    return await all_tasks(sessionmaker, operator.organisation_id) - before


async def tasks_of(sessionmaker: async_sessionmaker[AsyncSession], organisation_id: uuid.UUID) -> list[Any]:
    async with sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT t.id, t.request, o.occurrence_at FROM intake.tasks t "
                "JOIN intake.schedule_occurrences o ON o.task_id = t.id "
                "WHERE t.organisation_id = :org ORDER BY o.occurrence_at"
            ),
            {"org": organisation_id},
        )
        return list(rows)


async def all_tasks(sessionmaker: async_sessionmaker[AsyncSession], organisation_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(
            text("SELECT count(*) FROM intake.tasks WHERE organisation_id = :org"), {"org": organisation_id}
        )
        return int(found or 0)


def first_at(schedule: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(schedule["next_occurrences"][0]["at"])


async def test_preview_shows_the_next_occurrences_without_saving(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    body = lunch(rrule="FREQ=MONTHLY;BYMONTHDAY=-1", dtstart="2026-01-01T09:00")
    status, preview = await call(http, "POST", f"{intake}/v1/schedules/preview", operator, body)
    assert status == 200, preview
    assert preview["time_zone"] == "Asia/Shanghai" and len(preview["occurrences"]) == 10
    for occurrence in preview["occurrences"]:
        local = datetime.fromisoformat(occurrence["local"])
        assert (local.hour, local.minute) == (9, 0) and local.utcoffset() == timedelta(hours=8)
        assert (local + timedelta(days=1)).day == 1  # the last day of its month
        assert datetime.fromisoformat(occurrence["at"]) == local
    status, page = await call(http, "GET", f"{intake}/v1/schedules", operator)
    assert status == 200 and page["items"] == []


async def test_a_saved_schedule_shows_its_next_occurrences(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    created = await new_schedule(http, intake, operator)
    assert created["status"] == "active" and created["made"] == []
    assert [o["local"][11:16] for o in created["next_occurrences"]] == ["11:30"] * 5
    assert first_at(created).astimezone(SHANGHAI).replace(tzinfo=None) == tomorrow_at(11, 30)
    status, found = await call(http, "GET", f"{intake}/v1/schedules/{created['id']}", operator)
    assert status == 200 and found["next_occurrences"] == created["next_occurrences"]
    status, page = await call(http, "GET", f"{intake}/v1/schedules", operator)
    assert [item["id"] for item in page["items"]] == [created["id"]]


async def test_two_replicas_make_each_occurrence_once(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await new_schedule(http, intake, operator)
    first = first_at(created)
    # Both replicas run at once, over and over, each time three occurrences being due.
    for day in range(3):
        now = first + timedelta(days=day + 2, minutes=1)
        await asyncio.gather(*(run_at(sessionmaker, stack, operator, now) for _ in range(2)))
        assert await all_tasks(sessionmaker, operator.organisation_id) == day + 3
    made = await tasks_of(sessionmaker, operator.organisation_id)
    assert [row.occurrence_at for row in made] == [first + timedelta(days=d) for d in range(5)]
    assert await all_tasks(sessionmaker, operator.organisation_id) == 5
    assert all(datetime.fromisoformat(row.request["deliver_by"]) == row.occurrence_at for row in made)

    # A restart (the runner again, the same instant) makes nothing twice.
    assert await run_at(sessionmaker, stack, operator, first + timedelta(days=4, minutes=1)) == 0
    # Even with the cursor lost, the unique key per schedule and occurrence holds.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE intake.schedules SET cursor_at = created_at, next_occurrence_at = :first "
                "WHERE id = :id"
            ),
            {"id": created["id"], "first": first},
        )
    assert await run_at(sessionmaker, stack, operator, first + timedelta(days=4, minutes=1)) == 0
    assert await all_tasks(sessionmaker, operator.organisation_id) == 5

    status, found = await call(http, "GET", f"{intake}/v1/schedules/{created['id']}", operator)
    assert status == 200
    assert [datetime.fromisoformat(m["at"]) for m in found["made"]] == [
        first + timedelta(days=d) for d in reversed(range(5))
    ]
    status, task = await call(http, "GET", f"{intake}/v1/tasks/{found['made'][0]['task_id']}", operator)
    assert status == 200 and task["kind"] == "meal"


async def test_the_lead_time_decides_when_a_task_is_made(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await new_schedule(http, intake, operator)
    first = first_at(created)
    lead = 2 * 3600.0
    assert (
        await run_at(sessionmaker, stack, operator, first - timedelta(seconds=lead + 60), lead_time_s=lead)
        == 0
    )
    assert (
        await run_at(sessionmaker, stack, operator, first - timedelta(seconds=lead - 60), lead_time_s=lead)
        == 1
    )


async def test_pause_resume_skip_and_end(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await new_schedule(http, intake, operator)
    url, first = f"{intake}/v1/schedules/{created['id']}", first_at(created)

    status, paused = await call(http, "POST", f"{url}/pause", operator)
    assert status == 200 and paused["status"] == "paused"
    assert await run_at(sessionmaker, stack, operator, first + timedelta(days=3)) == 0

    status, resumed = await call(http, "POST", f"{url}/resume", operator)
    assert status == 200 and resumed["status"] == "active"
    second_day = (first + timedelta(days=1)).astimezone(SHANGHAI).date()
    status, skipped = await call(http, "POST", f"{url}/skip", operator, {"date": second_day.isoformat()})
    assert status == 200 and skipped["skipped_dates"] == [second_day.isoformat()]
    assert first + timedelta(days=1) not in [
        datetime.fromisoformat(o["at"]) for o in skipped["next_occurrences"]
    ]
    assert await run_at(sessionmaker, stack, operator, first + timedelta(days=2, minutes=1)) == 2
    made = await tasks_of(sessionmaker, operator.organisation_id)
    assert [row.occurrence_at for row in made] == [first, first + timedelta(days=2)]

    status, ended = await call(http, "POST", f"{url}/end", operator)
    assert status == 200 and ended["status"] == "ended" and ended["next_occurrences"] == []
    assert await run_at(sessionmaker, stack, operator, first + timedelta(days=9)) == 0
    status, again = await call(http, "POST", f"{url}/end", operator)
    assert status == 200 and again["ended_at"] == ended["ended_at"]
    for action, body in (("pause", None), ("resume", None), ("skip", {"date": "2030-01-01"})):
        status, problem = await call(http, "POST", f"{url}/{action}", operator, body)
        assert status == 409, (action, problem)
    status, problem = await call(http, "PATCH", url, operator, {"name": "later"})
    assert status == 409


async def test_occurrences_that_fell_while_paused_are_not_made_on_resume(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # A schedule that started in the past: what fell before it was saved, or while paused, is never made.
    start = datetime.now(SHANGHAI).replace(tzinfo=None, second=0, microsecond=0) - timedelta(days=3)
    created = await new_schedule(http, intake, operator, dtstart=start.isoformat(timespec="minutes"))
    url = f"{intake}/v1/schedules/{created['id']}"
    await call(http, "POST", f"{url}/pause", operator)
    await call(http, "POST", f"{url}/resume", operator)
    resumed_at = datetime.now(UTC)
    assert await run_at(sessionmaker, stack, operator, resumed_at) == 0
    made_next = await run_at(sessionmaker, stack, operator, resumed_at + timedelta(days=1))
    assert made_next == 1
    (row,) = await tasks_of(sessionmaker, operator.organisation_id)
    assert row.occurrence_at > resumed_at


async def test_a_changed_schedule_leaves_made_tasks_alone(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await new_schedule(http, intake, operator)
    url, first = f"{intake}/v1/schedules/{created['id']}", first_at(created)
    assert await run_at(sessionmaker, stack, operator, first + timedelta(days=1, minutes=1)) == 2
    before = await tasks_of(sessionmaker, operator.organisation_id)

    change = {"rrule": "FREQ=DAILY;BYHOUR=12;BYMINUTE=0", "task": task_body(kind="meal", notes="dinner")}
    status, changed = await call(http, "PATCH", url, operator, change)
    assert status == 200, changed
    assert [o["local"][11:16] for o in changed["next_occurrences"]] == ["12:00"] * 5
    assert await run_at(sessionmaker, stack, operator, first + timedelta(days=3, hours=1)) == 3

    # The second day's lunch was made before the change; its 12:00 was not yet, so it is made too.
    after = await tasks_of(sessionmaker, operator.organisation_id)
    assert after[:2] == before
    assert [row.request["notes"] for row in after] == ["lunch", "lunch", "dinner", "dinner", "dinner"]
    assert [row.occurrence_at.astimezone(SHANGHAI).strftime("%H:%M") for row in after] == [
        "11:30",
        "11:30",
        "12:00",
        "12:00",
        "12:00",
    ]


async def test_another_organisations_schedule_is_not_found(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stranger: Operator
) -> None:
    created = await new_schedule(http, intake, operator)
    url = f"{intake}/v1/schedules/{created['id']}"
    for method, path, body in (
        ("GET", "", None),
        ("PATCH", "", {"name": "mine"}),
        ("POST", "/pause", None),
        ("POST", "/resume", None),
        ("POST", "/skip", {"date": "2030-01-01"}),
        ("POST", "/end", None),
    ):
        status, _ = await call(http, method, url + path, stranger, body)
        assert status == 404, (method, path)
    status, page = await call(http, "GET", f"{intake}/v1/schedules", stranger)
    assert page["items"] == []
    status, still = await call(http, "GET", url, operator)
    assert still["status"] == "active" and still["name"] == created["name"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rrule": "FREQ=SOMETIMES"}, "$.rrule"),
        ({"rrule": "FREQ=MINUTELY;INTERVAL=1"}, "$.rrule"),
        ({"rrule": "FREQ=DAILY;COUNT=0"}, "$.rrule"),
        ({"time_zone": "Mars/Olympus_Mons"}, "$.time_zone"),
        ({"dtstart": "2026-12-07T11:30:00+08:00"}, "$.dtstart"),
    ],
)
async def test_a_bad_rule_is_refused_naming_its_field(
    http: aiohttp.ClientSession, intake: str, operator: Operator, overrides: dict[str, Any], field: str
) -> None:
    for path in ("/v1/schedules", "/v1/schedules/preview"):
        status, problem = await call(http, "POST", f"{intake}{path}", operator, lunch(**overrides))
        assert status == 422, problem
        assert field in [error["field"] for error in problem["errors"]]
    created = await new_schedule(http, intake, operator)
    status, problem = await call(http, "PATCH", f"{intake}/v1/schedules/{created['id']}", operator, overrides)
    assert status == 422 and field in [error["field"] for error in problem["errors"]]
