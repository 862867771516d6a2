"""The ops dashboard in a real headless Chromium: it renders, then follows the system live, no reload."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests.client import bearer
from tests.conftest import Stack
from tests.pages import DESKTOP, chromium, needs_chromium, wait_for

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "ops-dashboard.png"

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "chromium-profile", size=DESKTOP, language="en") as driver:
        yield driver


def number(driver: Any, element_id: str) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.ID, element_id).text)


def volunteer_drawn(volunteer_id: str) -> Callable[[Any], bool]:
    def drawn(driver: Any) -> bool:
        from selenium.webdriver.common.by import By

        return bool(driver.find_elements(By.CSS_SELECTOR, f'circle[data-volunteer-id="{volunteer_id}"]'))

    return drawn


async def test_the_dashboard_follows_a_task_and_a_volunteer_live(
    stack: Stack, system: ServiceProcesses, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    operator = bearer(tokens["operator_token"])

    browser.get(f"{intake}/ops#token={tokens['ops_token']}")
    await wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-updates"))
    await wait_for(browser, lambda d: d.find_element(By.ID, "live-state").text == "live")
    assert "token" not in browser.current_url, "the token is taken out of the address bar"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map text[data-district]")) == 11
    total_before = number(browser, "count-total")
    # Gone if the page reloaded: everything below must arrive over the open stream.
    browser.execute_script("window.__sameDocument = true;")

    volunteers: list[dict[str, str]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            # Uninsured volunteers are never offered a leg, so they change no other test's dispatch.
            for name, lat, lon in (
                ("Lin Hui", 29.9352, 121.5421),
                ("Zhou Min", 29.8705, 121.5602),
                ("Xu Lei", 29.9521, 121.7033),
                ("Ma Tao", 30.1622, 121.2870),
                ("He Yan", 29.6681, 121.4202),
            ):
                async with http.post(
                    f"{dispatcher}/v1/volunteers",
                    json={"name": name, "phone": "+8613800009999", "vehicle": "ebike", "insured": False},
                    headers=operator,
                ) as response:
                    assert response.status == 201, await response.text()
                    created = await response.json()
                me = bearer(created["token"])
                volunteers.append({"id": created["id"], "token": created["token"]})
                async with http.put(
                    f"{dispatcher}/v1/me/duty", json={"on_duty": True}, headers=me
                ) as response:
                    assert response.status == 200
                async with http.post(
                    f"{dispatcher}/v1/me/location",
                    json={"lat": lat, "lon": lon, "accuracy_m": 10},
                    headers=me,
                ) as response:
                    assert response.status == 202

            async with http.post(
                f"{intake}/v1/tasks",
                json={
                    "kind": "meal",
                    "priority": "urgent",
                    # Far from every volunteer of the suite, so it waits and shows among the waiting legs.
                    "pickup": {"lat": -43.53, "lon": 172.63, "address": "Community kitchen"},
                    "dropoffs": [{"lat": -43.54, "lon": 172.64, "recipient_name": "Mere"}],
                },
                headers={**operator, "Idempotency-Key": str(uuid.uuid4())},
            ) as response:
                assert response.status == 201, await response.text()

            await wait_for(browser, lambda d: number(d, "count-total") >= total_before + 1)
            for volunteer in volunteers:
                await wait_for(browser, volunteer_drawn(volunteer["id"]))
            assert browser.execute_script("return window.__sameDocument === true;"), "no reload happened"
            assert number(browser, "volunteers-located") >= len(volunteers)

            screenshot = tmp_path / "ops-dashboard.png"
            assert browser.save_screenshot(str(screenshot))
            DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(screenshot, DOCS_SCREENSHOT)
            print(f"\nops dashboard screenshot: {screenshot} (copied to {DOCS_SCREENSHOT})")
        finally:
            for volunteer in volunteers:
                async with http.put(
                    f"{dispatcher}/v1/me/duty", json={"on_duty": False}, headers=bearer(volunteer["token"])
                ) as response:
                    assert response.status == 200
