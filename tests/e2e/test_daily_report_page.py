"""The daily report in a real headless Chromium at phone size, as a coordinator opens it: logged in
with her own account (the session cookie), in Chinese first, then in English from the language
switch, with no code left raw, nothing wider than the screen, and no serious accessibility fault."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests.client import bearer
from tests.conftest import Stack
from tests.pages import axe_violations, by_label, by_text, chromium, needs_chromium, wait_for

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
NARROW_PHONE = (360, 780)
PASSWORD = "lunch for everyone at 11:30"
SESSION_COOKIE = "errands_session"

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "chromium-profile", size=NARROW_PHONE, language="zh", mobile=True) as driver:
        yield driver


async def _coordinator(http: aiohttp.ClientSession, intake: str, admin_token: str, organisation: str) -> str:
    """An operator's account set up as an admin hands it over, then her session cookie's value."""
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.org"
    async with http.post(
        f"{intake}/v1/people",
        json={"email": email, "role": "operator", "organisation_id": organisation},
        headers=bearer(admin_token),
    ) as response:
        created = await response.json()
        assert response.status == 201, created
    async with http.post(
        f"{intake}/v1/password-setup", json={"token": created["setup"]["token"], "password": PASSWORD}
    ) as response:
        assert response.status == 204, await response.text()
    async with http.post(f"{intake}/v1/sessions", json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 201, await response.text()
        return response.cookies[SESSION_COOKIE].value


def _task(kind: str, priority: str) -> dict[str, Any]:
    # Far from every volunteer of the suite, so nobody is dispatched to it.
    return {
        "kind": kind,
        "priority": priority,
        "pickup": {"lat": -45.87, "lon": 170.50, "address": "Depot 2"},
        "dropoffs": [{"lat": -45.88, "lon": 170.51, "recipient_name": "Wang Fang", "language": "zh"}],
    }


def _page_fits(driver: Any) -> bool:
    return bool(driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth;"))


def _visible_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def _screenshot(driver: Any, name: str) -> None:
    """The whole page at phone size into docs/img, only when asked (ERRANDS_SCREENSHOTS=1)."""
    if os.environ.get("ERRANDS_SCREENSHOTS") != "1":
        return
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    width = driver.execute_script("return document.documentElement.clientWidth;")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    (DOCS_IMG / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


async def test_a_coordinator_reads_the_daily_report_on_her_phone_in_chinese_then_english(
    stack: Stack, system: ServiceProcesses, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    demo = await admin.bootstrap_demo(stack.settings())
    organisation = await admin.new_organisation(stack.settings(), f"centre-{uuid.uuid4().hex[:8]}")
    intake = system.url("intake")
    async with aiohttp.ClientSession() as http:
        for kind, priority in (("supply_run", "urgent"), ("supply_run", "routine"), ("meal", "critical")):
            async with http.post(
                f"{intake}/v1/tasks",
                json=_task(kind, priority),
                headers={**bearer(organisation["operator_token"]), "Idempotency-Key": str(uuid.uuid4())},
            ) as response:
                assert response.status == 201, await response.text()
        cookie = await _coordinator(http, intake, demo["admin_token"], organisation["id"])
    day = datetime.now(UTC).astimezone(ZoneInfo(stack.settings().local_time_zone)).date()

    # The cookie her login set, as her browser keeps it (HttpOnly, for this site only).
    browser.get(f"{intake}/openapi.json")
    browser.add_cookie(
        {"name": SESSION_COOKIE, "value": cookie, "path": "/", "httpOnly": True, "sameSite": "Strict"}
    )
    browser.get(f"{intake}/v1/reports/daily?date={day.isoformat()}")

    await wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("每日报告"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh"
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert f"{day.year}年{day.month}月{day.day}日" in heading
    text = _visible_text(browser)
    for shown in (
        "按类型和结果的任务",
        "物资运送",
        "送餐",
        "紧急",
        "危急",
        "常规",
        "共 3 个任务",
        "语言匹配",
        "中文",
    ):
        assert shown in text, shown
    for code in ("supply_run", "meal", "urgent", "critical", "dispatching", "submitted", "not_assigned"):
        assert code not in text and code not in browser.page_source, code
    # Every chart is an image named by its title; the figures are in a table beside it.
    charts = browser.find_elements(By.CSS_SELECTOR, "svg[role=img]")
    assert charts and all(chart.get_attribute("aria-labelledby") for chart in charts)
    assert "按类型统计的任务" in [
        t.get_attribute("textContent") for t in browser.find_elements(By.TAG_NAME, "title")
    ]
    assert _page_fits(browser), "the page scrolls sideways at 360 px"
    # The seven columns of timings are wider than the phone: they scroll in their own box.
    assert browser.execute_script(
        "const box = document.querySelector('[role=region][aria-labelledby=timings-table]');"
        "return box.scrollWidth > box.clientWidth;"
    )
    assert by_label(browser, "日期").get_attribute("value") == day.isoformat()
    assert axe_violations(browser) == []
    _screenshot(browser, "daily-report-zh")

    by_text(browser, "English", tag="a").click()
    await wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
    assert by_text(browser, "English", tag="a").get_attribute("aria-current") == "page"
    text = _visible_text(browser)
    assert f"Daily report: {day.strftime('%A')} {day.day} {day.strftime('%B')} {day.year}" in text
    for shown in (
        "Tasks by kind and outcome",
        "Supply run",
        "Meal",
        "Urgent",
        "Critical",
        "3 tasks",
        "Chinese",
    ):
        assert shown in text, shown
    for code in ("supply_run", "dispatching", "submitted", "not_assigned"):
        assert code not in text and code not in browser.page_source, code
    assert _page_fits(browser), "the page scrolls sideways at 360 px"
    assert axe_violations(browser) == []
    _screenshot(browser, "daily-report-en")

    assert by_label(browser, "Day").get_attribute("value") == day.isoformat()
    # The choice is remembered: the next report opens in English without asking again.
    browser.get(f"{intake}/v1/reports/daily?date={day.isoformat()}")
    await wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Daily report"))
