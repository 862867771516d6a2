"""The daily report over HTTP: its sections in the reader's language, escaped content, and each
organisation's own tasks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from services.intake.adapters.tables import LegRow, TimelineRow
from tests.client import bearer
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body

SECTIONS = ("Tasks by kind and outcome", "Time to assign and to deliver, by priority",
            "Volunteers’ hours and rest", "Escalations", "Language matches")  # fmt: skip


async def _report(
    http: aiohttp.ClientSession, intake: str, headers: dict[str, str], day: str, **params: str
) -> tuple[int, str]:
    async with http.get(
        f"{intake}/v1/reports/daily", params={"date": day, **params}, headers=headers
    ) as response:
        return response.status, await response.text()


async def test_the_daily_report_has_its_sections_escaped_and_scoped(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    demo_tokens: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    other_org = await admin.new_organisation(stack.settings(), f"org-{uuid.uuid4().hex[:8]}")
    other = Operator(uuid.UUID(other_org["id"]), other_org["operator_token"])
    status, mine, _ = await submit(http, intake, operator, task_body(priority="urgent"))
    assert status == 201
    status, theirs, _ = await submit(http, intake, other, task_body(kind="meal"))
    assert status == 201
    now = datetime.now(UTC)
    volunteer = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(LegRow)
            .where(LegRow.id == uuid.UUID(mine["legs"][0]["id"]))
            .values(
                volunteer_id=volunteer,
                volunteer_name="<script>alert(1)</script>",
                status="delivered",
                transitions={
                    "assigned": (now + timedelta(minutes=2)).isoformat(),
                    "delivered": (now + timedelta(minutes=32)).isoformat(),
                },
                escalated_at=now,
                escalation_reason="waited_too_long_pending",
            )
        )
        # As intake keeps `leg.assigned` on the timeline: whether the volunteer speaks the language.
        session.add(
            TimelineRow(
                event_id=uuid.uuid4(),
                task_id=uuid.UUID(mine["id"]),
                type="leg.assigned",
                time=now,
                leg_id=uuid.UUID(mine["legs"][0]["id"]),
                data={"speaks_dropoff_language": True},
            )
        )
        await session.execute(
            update(LegRow)
            .where(LegRow.id == uuid.UUID(theirs["legs"][0]["id"]))
            .values(volunteer_id=uuid.uuid4(), volunteer_name="Other Org Person")
        )
    day = now.astimezone(ZoneInfo(stack.settings().local_time_zone)).date().isoformat()

    status, page = await _report(http, intake, operator.headers, day, lang="en")

    assert status == 200, page
    assert '<html lang="en">' in page
    for section in SECTIONS:
        assert section in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Waited too long for a volunteer" in page and "waited_too_long" not in page
    # The other organisation's task is not counted; kinds are named, not coded.
    assert "Supply run" in page and "supply_run" not in page and "Meal" not in page
    assert "Other Org Person" not in page
    assert "<svg" in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert '<th scope="col">' in page
    assert "0.50" in page  # 30 minutes busy
    assert "Volunteer speaks it" in page
    local_hour = now.astimezone(ZoneInfo(stack.settings().local_time_zone)).hour
    assert "Tasks by hour of the day (local time)" in page and f"{local_hour:02d}:00" in page
    assert "Hours carrying legs, busiest volunteers first" in page

    # In Chinese unless asked otherwise; ops read every organisation's tasks.
    status, page = await _report(http, intake, bearer(demo_tokens["ops_token"]), day)
    assert status == 200
    assert '<html lang="zh">' in page and "按类型和结果的任务" in page
    assert "送餐" in page and "物资运送" in page and str(volunteer) in page
    assert "Other Org Person" not in page and "alert(1)" not in page  # ops see volunteer ids


async def test_a_bad_date_is_a_problem_naming_it(
    http: aiohttp.ClientSession, intake: str, operator: Operator, demo_tokens: dict[str, str]
) -> None:
    status, page = await _report(http, intake, operator.headers, "2026-13-40")
    assert status == 400 and '"date"' in page
    status, page = await _report(http, intake, operator.headers, "0001-01-01")
    assert status == 400 and '"date"' in page  # year 0 in UTC: no database could be asked
    status, page = await _report(http, intake, operator.headers, "2026-12-06", lang="fr")
    assert status == 400 and '"lang"' in page
    status, _ = await _report(http, intake, bearer(demo_tokens["admin_token"]), "2026-12-06")
    assert status == 403
