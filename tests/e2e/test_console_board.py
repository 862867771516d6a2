"""The console's dispatch board, volunteers, records and files in a real headless Chromium, on the
real stack, used as a coordinator would: by the words on the screen.

Volunteers sit in Ningbo and the tasks' pickups in Christchurch, so the matcher never offers these
legs to anyone: only the coordinator's hand moves them.
"""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from services.intake.entrypoints.pages import CATALOGUE
from tests.client import bearer, until
from tests.conftest import Stack
from tests.pages import DESKTOP, PHONE, axe_violations, by_label, by_text, chromium, needs_chromium, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]

PASSWORD = "a long enough password 1"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SCREENSHOTS = os.environ.get("ERRANDS_SCREENSHOTS") == "1"
CHRISTCHURCH = (-43.53, 172.63)


def t(lang: str, key: str, **values: object) -> str:
    return CATALOGUE.text(lang, key, **values)


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json(content_type=None)


async def new_coordinator(
    http: aiohttp.ClientSession,
    intake: str,
    admin_token: str,
    organisation_id: str,
    *,
    role: str = "operator",
) -> str:
    """A coordinator (operator, or `ops`) of the organisation with a password; their e-mail."""
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.org"
    async with http.post(
        f"{intake}/v1/people",
        json={"email": email, "role": role, "organisation_id": organisation_id},
        headers=bearer(admin_token),
    ) as response:
        created = await _json(response)
        assert response.status == 201, created
    async with http.post(
        f"{intake}/v1/password-setup", json={"token": created["setup"]["token"], "password": PASSWORD}
    ) as response:
        assert response.status == 204, await response.text()
    return email


async def on_duty_volunteer(
    http: aiohttp.ClientSession,
    dispatcher: str,
    operator: dict[str, str],
    name: str,
    lat: float,
    lon: float,
    *,
    insured_until: date,
) -> dict[str, str]:
    async with http.post(
        f"{dispatcher}/v1/volunteers",
        json={
            "name": name,
            "phone": "+8613800001111",
            "vehicle": "ebike",
            "insured": True,
            "insured_until": insured_until.isoformat(),
            "max_active_legs": 5,
        },
        headers=operator,
    ) as response:
        created = await _json(response)
        assert response.status == 201, created
    me = bearer(created["token"])
    async with http.put(f"{dispatcher}/v1/me/duty", json={"on_duty": True}, headers=me) as response:
        assert response.status == 200, await response.text()
    async with http.post(
        f"{dispatcher}/v1/me/location", json={"lat": lat, "lon": lon, "accuracy_m": 10}, headers=me
    ) as response:
        assert response.status == 202, await response.text()
    return {"id": created["id"], "token": created["token"], "name": name}


async def far_task(
    http: aiohttp.ClientSession, intake: str, operator: dict[str, str], ref: str
) -> dict[str, Any]:
    async with http.post(
        f"{intake}/v1/tasks",
        json={
            "kind": "meal",
            "priority": "urgent",
            "pickup": {"lat": CHRISTCHURCH[0], "lon": CHRISTCHURCH[1], "address": f"Kitchen {ref}"},
            "dropoffs": [{"lat": -43.54, "lon": 172.64, "address": f"Flat {ref}", "recipient_name": "Mere"}],
            "external_ref": ref,
        },
        headers={**operator, "Idempotency-Key": str(uuid.uuid4())},
    ) as response:
        created: dict[str, Any] = await _json(response)
        assert response.status == 201, created
    return created


def short_id(task: dict[str, Any]) -> str:
    return f"{task['id'][:8]}-1"


async def log_in(driver: Any, intake: str, email: str, lang: str) -> None:
    driver.get(f"{intake}/console/login?lang={lang}")
    by_label(driver, t(lang, "login.email")).send_keys(email)
    by_label(driver, t(lang, "login.password")).send_keys(PASSWORD)
    by_text(driver, t(lang, "login.submit"), tag="button").click()
    await wait_for(driver, lambda d: "/console/login" not in d.current_url)


def heading_is(text: str) -> Callable[[Any], bool]:
    def shown(driver: Any) -> bool:
        from selenium.webdriver.common.by import By

        return bool(driver.find_element(By.TAG_NAME, "h1").text == text)

    return shown


def shot(driver: Any, name: str) -> None:
    if SCREENSHOTS:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(DOCS_IMG / f"console-{name}.png"))


def no_violations(driver: Any, where: str) -> None:
    violations = axe_violations(driver)
    assert violations == [], f"{where}: {violations}"


def column_of(driver: Any, volunteer_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'.volunteer-col[data-volunteer-id="{volunteer_id}"]')


def card_in_queue(driver: Any, leg_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'.queue .leg-card[data-leg-id="{leg_id}"]')


DRAG_AND_DROP = """
const [card, target] = arguments;
const data = new DataTransfer();
card.dispatchEvent(new DragEvent('dragstart', {bubbles: true, cancelable: true, dataTransfer: data}));
target.dispatchEvent(new DragEvent('dragenter', {bubbles: true, cancelable: true, dataTransfer: data}));
target.dispatchEvent(new DragEvent('dragover', {bubbles: true, cancelable: true, dataTransfer: data}));
target.dispatchEvent(new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: data}));
card.dispatchEvent(new DragEvent('dragend', {bubbles: true, cancelable: true, dataTransfer: data}));
"""


async def leg_holder(
    http: aiohttp.ClientSession, intake: str, operator: dict[str, str], task_id: str
) -> str | None:
    async with http.get(f"{intake}/v1/tasks/{task_id}", headers=operator) as response:
        task = await _json(response)
    volunteer = task["legs"][0]["volunteer"]
    return volunteer["id"] if volunteer else None


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "desktop-profile", size=DESKTOP, language="en") as driver:
        yield driver


async def test_a_coordinator_dispatches_vets_registers_and_imports(
    stack: Stack, system: ServiceProcesses, desktop: Any, downloads: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver = desktop
    lang = "en"
    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    operator = bearer(tokens["operator_token"])
    today = datetime.now(UTC).date()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        email = await new_coordinator(http, intake, tokens["admin_token"], tokens["organisation_id"])
        lin = await on_duty_volunteer(
            http,
            dispatcher,
            operator,
            "Lin Hui",
            29.9352,
            121.5421,
            insured_until=today + timedelta(days=300),
        )
        zhou = await on_duty_volunteer(
            http, dispatcher, operator, "Zhou Min", 29.8705, 121.5602, insured_until=today + timedelta(days=5)
        )
        first = await far_task(http, intake, operator, "board-1")
        second = await far_task(http, intake, operator, "board-2")
        first_leg, second_leg = first["legs"][0]["id"], second["legs"][0]["id"]
        try:
            await log_in(driver, intake, email, lang)
            driver.get(f"{intake}/console/board")
            await wait_for(driver, lambda d: d.find_element(By.ID, "board").get_attribute("data-ready"))
            # The queue shows both legs, most urgent and oldest first; each volunteer has a column.
            await wait_for(driver, lambda d: card_in_queue(d, first_leg) and card_in_queue(d, second_leg))
            by_text(driver, t(lang, "board.leg_name", id=short_id(first)), tag="a")
            assert column_of(driver, lin["id"]).find_element(By.TAG_NAME, "h3").text == "Lin Hui"
            assert column_of(driver, zhou["id"]).find_element(By.TAG_NAME, "h3").text == "Zhou Min"
            # The map draws the waiting pickups and the volunteers on duty (no tiles: a plain background).
            await wait_for(
                driver, lambda d: int(d.find_element(By.ID, "board-map").get_attribute("data-points")) >= 4
            )
            assert driver.find_elements(
                By.CSS_SELECTOR, "#board-map path.leaflet-interactive, #board-map path"
            )
            no_violations(driver, "board")
            shot(driver, "board-desktop")

            # Drag the first leg onto Lin Hui's column: the card's own form is sent.
            driver.execute_script(
                DRAG_AND_DROP, card_in_queue(driver, first_leg), column_of(driver, lin["id"])
            )
            await wait_for(
                driver, lambda d: t(lang, "board.notice.assigned") in d.find_element(By.TAG_NAME, "body").text
            )
            assert await until(
                lambda: _holder_is(http, intake, operator, first["id"], lin["id"]),
                timeout_s=30,
                what="assigned by drag",
            )

            # The keyboard path: choose a volunteer in the second leg's form and press Enter on its button.
            chooser = by_label(driver, t(lang, "board.assign_to", id=short_id(second)))
            chooser.send_keys(Keys.TAB)  # focus moves through the form as a keyboard user's would
            Select(chooser).select_by_visible_text("Lin Hui")
            button = card_in_queue(driver, second_leg).find_element(By.CSS_SELECTOR, "button[type=submit]")
            button.send_keys(Keys.ENTER)
            await wait_for(
                driver, lambda d: t(lang, "board.notice.assigned") in d.find_element(By.TAG_NAME, "body").text
            )
            assert await until(
                lambda: _holder_is(http, intake, operator, second["id"], lin["id"]),
                timeout_s=30,
                what="assigned by keys",
            )

            # Lin Hui's column fills as the read model catches up (the board refreshes itself).
            await wait_for(
                driver,
                lambda d: len(column_of(d, lin["id"]).find_elements(By.CSS_SELECTOR, ".leg-card")) == 2,
            )
            # Lin Hui falls ill: all of her legs go to Zhou Min at once.
            Select(by_label(driver, t(lang, "board.move_all_to", name="Lin Hui"))).select_by_visible_text(
                "Zhou Min"
            )
            column_of(driver, lin["id"]).find_element(By.CSS_SELECTOR, ".move-form button").click()
            await wait_for(
                driver, lambda d: t(lang, "board.notice.moved") in d.find_element(By.TAG_NAME, "body").text
            )
            for task_id in (first["id"], second["id"]):

                def moved(task_id: str = task_id) -> Awaitable[bool | None]:
                    return _holder_is(http, intake, operator, task_id, zhou["id"])

                assert await until(moved, timeout_s=30, what="moved to Zhou Min")
            await wait_for(
                driver,
                lambda d: len(column_of(d, zhou["id"]).find_elements(By.CSS_SELECTOR, ".leg-card")) == 2,
            )

            # A sign-up waits for vetting; the coordinator checks and approves it.
            async with http.post(f"{dispatcher}/v1/invite-codes", json={}, headers=operator) as response:
                invite = await _json(response)
                assert response.status == 201, invite
            async with http.post(
                f"{dispatcher}/v1/signups",
                json={"invite_code": invite["code"], "name": "Wang Fang", "phone": "+8613800002222"},
            ) as response:
                signup = await _json(response)
                assert response.status == 201, signup
            driver.get(f"{intake}/console/volunteers")
            card = driver.find_element(
                By.XPATH, "//li[contains(@class,'card')][.//h3[contains(., 'Wang Fang')]]"
            )
            for label in ("vol.identity_checked", "vol.training_done"):
                card.find_element(
                    By.XPATH, f".//label[normalize-space()={_xpath(t(lang, label))}]//input"
                ).click()
            # Zhou Min's insurance ends in five days: said in words, not only by colour.
            assert (
                t(lang, "vol.insurance.lapsing", date=(today + timedelta(days=5)).isoformat())
                in driver.find_element(By.TAG_NAME, "body").text
            )
            no_violations(driver, "volunteers")
            shot(driver, "volunteers-desktop")
            by_text(driver, t(lang, "vol.approve", name="Wang Fang"), tag="button").click()
            await wait_for(
                driver, lambda d: t(lang, "vol.notice.approved") in d.find_element(By.TAG_NAME, "body").text
            )
            async with http.get(
                f"{dispatcher}/v1/volunteers/{signup['volunteer_id']}/vetting", headers=operator
            ) as response:
                vetting = await _json(response)
            assert vetting["vetting_status"] == "approved"
            assert vetting["records"][0]["identity_checked"] is True

            # Register a volunteer and show the QR code their phone enrols with.
            by_label(driver, t(lang, "vol.name")).send_keys("Chen Jie")
            by_label(driver, t(lang, "vol.phone")).send_keys("+8613800003333")
            by_text(driver, t(lang, "vol.register_button"), tag="button").click()
            await wait_for(
                driver,
                lambda d: (
                    d.find_element(By.TAG_NAME, "h1").text == t(lang, "vol.enrolment_title", name="Chen Jie")
                ),
            )
            qr = driver.find_element(
                By.CSS_SELECTOR, f"img[alt={_css_string(t(lang, 'vol.qr_alt', name='Chen Jie'))}]"
            )
            await wait_for(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", qr) > 0)
            no_violations(driver, "enrolment")
            shot(driver, "enrolment-desktop")
            # Disable a volunteer: the list says so in words.
            driver.get(f"{intake}/console/volunteers")
            by_text(driver, t(lang, "vol.disable", name="Chen Jie"), tag="button").click()
            await wait_for(
                driver, lambda d: t(lang, "vol.notice.disabled") in d.find_element(By.TAG_NAME, "body").text
            )
            row = driver.find_element(By.XPATH, "//tr[th[contains(., 'Chen Jie')]]")
            assert t(lang, "vol.disabled") in row.text

            # Add a recipient, then find them by a word of their name and by their phone.
            driver.get(f"{intake}/console/recipients")
            by_label(driver, t(lang, "rec.name")).send_keys("Zhang Wei")
            by_label(driver, t(lang, "rec.phone")).send_keys("+8613900004444")
            by_label(driver, t(lang, "rec.lat")).send_keys("29.87")
            by_label(driver, t(lang, "rec.lon")).send_keys("121.55")
            by_label(driver, t(lang, "rec.consent_given")).click()
            by_text(driver, t(lang, "rec.add_button"), tag="button").click()
            await wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Zhang Wei")
            assert (
                t(lang, "rec.consent_on", date=datetime.now(UTC).strftime("%Y-%m-%d"))
                in driver.find_element(By.TAG_NAME, "body").text
            )
            recipient_url = driver.current_url.split("?")[0]
            no_violations(driver, "recipient")
            # Edit the record: the access notes change, the consent stays.
            by_label(driver, t(lang, "rec.access_notes")).send_keys("3rd floor, ring twice")
            by_text(driver, t(lang, "rec.save"), tag="button").click()
            await wait_for(
                driver, lambda d: t(lang, "rec.notice.saved") in d.find_element(By.TAG_NAME, "body").text
            )
            assert (
                by_label(driver, t(lang, "rec.access_notes")).get_attribute("value")
                == "3rd floor, ring twice"
            )
            assert by_label(driver, t(lang, "rec.consent_given")).is_selected()
            driver.get(f"{intake}/console/recipients")
            by_label(driver, t(lang, "rec.search")).send_keys("zhang" + Keys.ENTER)
            await wait_for(
                driver,
                lambda d: (
                    t(lang, "rec.found", count=1, q="zhang") in d.find_element(By.TAG_NAME, "body").text
                ),
            )
            by_label(driver, t(lang, "rec.search")).clear()
            by_label(driver, t(lang, "rec.search")).send_keys("+8613900004444" + Keys.ENTER)
            await wait_for(
                driver,
                lambda d: (
                    t(lang, "rec.found", count=1, q="+8613900004444")
                    in d.find_element(By.TAG_NAME, "body").text
                ),
            )
            assert (
                driver.find_element(By.CSS_SELECTOR, ".card a").get_attribute("href").split("?")[0]
                == recipient_url
            )
            no_violations(driver, "recipients")
            shot(driver, "recipients-desktop")

            # A saved place, and a weekly delivery from it to Zhang Wei, previewed before it is saved.
            driver.get(f"{intake}/console/places")
            by_label(driver, t(lang, "place.name")).send_keys("Community kitchen")
            by_label(driver, t(lang, "rec.lat")).send_keys("29.88")
            by_label(driver, t(lang, "rec.lon")).send_keys("121.56")
            by_text(driver, t(lang, "place.add_button"), tag="button").click()
            await wait_for(
                driver,
                lambda d: (
                    t(lang, "place.archive", name="Community kitchen")
                    in d.find_element(By.TAG_NAME, "body").text
                ),
            )
            no_violations(driver, "places")
            driver.get(f"{intake}/console/schedules")
            by_label(driver, t(lang, "sched.name")).send_keys("Lunch for Zhang Wei")
            for day in ("MO", "TH"):
                by_label(driver, t(lang, "sched.day." + day)).click()
            start = today + timedelta(days=1)
            driver.execute_script(
                "arguments[0].value = arguments[1]",
                by_label(driver, t(lang, "sched.start_date")),
                start.isoformat(),
            )
            Select(by_label(driver, t(lang, "sched.pickup"))).select_by_visible_text("Community kitchen")
            Select(by_label(driver, t(lang, "sched.dropoff"))).select_by_index(1)
            by_text(driver, t(lang, "sched.preview"), tag="button").click()
            await wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#preview-heading"))
            occurrences = driver.find_elements(By.CSS_SELECTOR, "[aria-labelledby=preview-heading] li time")
            assert occurrences, "the preview lists the next occurrences"
            weekdays = {date.fromisoformat(o.get_attribute("datetime")[:10]).weekday() for o in occurrences}
            assert weekdays <= {0, 3}
            no_violations(driver, "schedules")
            shot(driver, "schedules-desktop")
            by_text(driver, t(lang, "sched.save"), tag="button").click()
            await wait_for(
                driver,
                lambda d: (
                    t(lang, "sched.pause", name="Lunch for Zhang Wei")
                    in d.find_element(By.TAG_NAME, "body").text
                ),
            )

            # Erase Zhang Wei on request: gone from the register.
            driver.get(recipient_url)
            by_label(driver, t(lang, "rec.erase_sure")).click()
            by_text(driver, t(lang, "rec.erase_button"), tag="button").click()
            await wait_for(
                driver, lambda d: t(lang, "rec.notice.erased") in d.find_element(By.TAG_NAME, "body").text
            )
            driver.get(recipient_url)
            assert "Zhang Wei" not in driver.find_element(By.TAG_NAME, "body").text

            # Import a sheet with one bad row: the error names its row and column; the good row is a task.
            sheet = tmp_path / "hotline.csv"
            ref = uuid.uuid4().hex[:8]
            with sheet.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(
                    [
                        "task",
                        "kind",
                        "priority",
                        "pickup_lat",
                        "pickup_lon",
                        "dropoff_lat",
                        "dropoff_lon",
                        "recipient_name",
                        "external_ref",
                    ]
                )
                writer.writerow(
                    [f"good-{ref}", "meal", "routine", *CHRISTCHURCH, -43.54, 172.64, "Aroha", f"csv-{ref}"]
                )
                writer.writerow(
                    [
                        f"bad-{ref}",
                        "meal",
                        "routine",
                        *CHRISTCHURCH,
                        "north-ish",
                        172.64,
                        "Tama",
                        f"csv-bad-{ref}",
                    ]
                )
            driver.get(f"{intake}/console/files")
            by_label(driver, t(lang, "files.file")).send_keys(str(sheet))
            by_text(driver, t(lang, "files.import_button"), tag="button").click()
            await wait_for(driver, lambda d: d.find_elements(By.ID, "result-heading"))
            assert (
                t(lang, "files.summary", created=1, existing=0, rejected=1)
                in driver.find_element(By.TAG_NAME, "body").text
            )
            rows = driver.find_elements(By.CSS_SELECTOR, "table.data tbody tr")
            cells = [[c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")] for row in rows]
            good = cells[0]
            assert good[:2] == ["2", f"good-{ref}"] and t(lang, "files.outcome.created") in good[2]
            bad = cells[1]
            assert bad[0] == "3" and bad[1] == f"bad-{ref}"
            assert t(lang, "files.outcome.rejected") in bad[2] and bad[3] == "dropoff_lat" and bad[4]
            good_task = (
                driver.find_element(By.LINK_TEXT, f"good-{ref}").get_attribute("href").rsplit("/", 1)[1]
            )
            async with http.get(f"{intake}/v1/tasks/{good_task}", headers=operator) as response:
                assert response.status == 200
                assert (await _json(response))["external_ref"] == f"csv-{ref}"
            no_violations(driver, "files")
            shot(driver, "files-desktop")

            # Download the export of today's tasks.
            driver.execute_cdp_cmd(
                "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
            )
            by_text(driver, t(lang, "files.export_button"), tag="button").click()
            exported = downloads / "tasks.csv"
            await until(
                lambda: (exported.exists() and exported.stat().st_size > 0) or None,
                timeout_s=30,
                what="export",
            )
            assert good_task in exported.read_text(encoding="utf-8")
            report = driver.find_element(By.LINK_TEXT, t(lang, "files.report_today")).get_attribute("href")
            assert "/v1/reports/daily?date=" in report
            by_text(driver, t(lang, "files.report_button"), tag="button").click()
            await wait_for(driver, lambda d: "/v1/reports/daily?date=" in d.current_url)
        finally:
            for volunteer in (lin, zhou):
                async with http.put(
                    f"{dispatcher}/v1/me/duty", json={"on_duty": False}, headers=bearer(volunteer["token"])
                ) as response:
                    assert response.status == 200


async def _holder_is(
    http: aiohttp.ClientSession, intake: str, operator: dict[str, str], task_id: str, volunteer_id: str
) -> bool | None:
    return True if await leg_holder(http, intake, operator, task_id) == volunteer_id else None


def _xpath(text: str) -> str:
    from tests.pages import xpath_literal

    return xpath_literal(text)


def _css_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def test_every_screen_in_chinese_on_a_phone_has_no_serious_accessibility_problem(
    stack: Stack, system: ServiceProcesses, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    operator = bearer(tokens["operator_token"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        email = await new_coordinator(http, intake, tokens["admin_token"], tokens["organisation_id"])
        volunteer = await on_duty_volunteer(
            http,
            dispatcher,
            operator,
            "林慧",
            29.93,
            121.54,
            insured_until=datetime.now(UTC).date() + timedelta(days=3),
        )
        task = await far_task(http, intake, operator, "zh-1")
        async with http.post(
            f"{intake}/v1/recipients",
            json={"name": "王芳", "phone": "+8613900005555", "lat": 29.87, "lon": 121.55},
            headers=operator,
        ) as response:
            recipient = await _json(response)
            assert response.status == 201, recipient
        try:
            with chromium(tmp_path / "phone", size=PHONE, language="zh") as driver:
                await log_in(driver, intake, email, "zh")
                for path, name in (
                    ("/console/board", "board"),
                    ("/console/volunteers", "volunteers"),
                    ("/console/recipients", "recipients"),
                    ("/console/places", "places"),
                    ("/console/schedules", "schedules"),
                    ("/console/files", "files"),
                ):
                    driver.get(f"{intake}{path}")
                    await wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text)
                    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh"
                    if name == "board":
                        await wait_for(driver, lambda d: card_in_queue(d, task["legs"][0]["id"]))
                        assert (
                            t("zh", "board.queue", count=1) in driver.find_element(By.TAG_NAME, "body").text
                        )
                    # Phone-first: nothing wider than the screen.
                    assert driver.execute_script(
                        "return document.documentElement.scrollWidth <= window.innerWidth + 1"
                    )
                    no_violations(driver, f"{name} (zh, phone)")
                    shot(driver, f"{name}-phone")
                driver.get(f"{intake}/console/volunteers")
                lapsing = t(
                    "zh",
                    "vol.insurance.lapsing",
                    date=(datetime.now(UTC).date() + timedelta(days=3)).isoformat(),
                )
                assert lapsing in driver.find_element(By.TAG_NAME, "body").text
                # A volunteer's enrolment QR code, and one recipient's record.
                by_text(driver, t("zh", "vol.enrol", name="林慧"), tag="button").click()
                await wait_for(
                    driver,
                    lambda d: (
                        d.find_element(By.TAG_NAME, "h1").text == t("zh", "vol.enrolment_title", name="林慧")
                    ),
                )
                no_violations(driver, "enrolment (zh, phone)")
                shot(driver, "enrolment-phone")
                driver.get(f"{intake}/console/recipients/{recipient['id']}")
                await wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text == "王芳")
                no_violations(driver, "recipient (zh, phone)")
                # Korean and Japanese read as well.
                for lang in ("ko", "ja"):
                    driver.get(f"{intake}/console/board?lang={lang}")
                    await wait_for(driver, heading_is(t(lang, "board.title")))
                    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
                    no_violations(driver, f"board ({lang}, phone)")
        finally:
            async with http.put(
                f"{dispatcher}/v1/me/duty", json={"on_duty": False}, headers=bearer(volunteer["token"])
            ) as response:
                assert response.status == 200


async def test_another_organisations_records_and_legs_are_not_found(
    stack: Stack, system: ServiceProcesses
) -> None:
    intake = system.url("intake")
    ours = await admin.bootstrap_demo(stack.settings())
    theirs = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.post(
            f"{intake}/v1/recipients",
            json={"name": "Private Person", "lat": 29.8, "lon": 121.5},
            headers=bearer(ours["operator_token"]),
        ) as response:
            recipient = await _json(response)
            assert response.status == 201, recipient
        task = await far_task(http, intake, bearer(ours["operator_token"]), "isolation")
        email = await new_coordinator(http, intake, theirs["admin_token"], theirs["organisation_id"])
        async with http.post(
            f"{intake}/v1/sessions", json={"email": email, "password": PASSWORD}
        ) as response:
            session = await _json(response)
            assert response.status == 201, session
            secret = response.cookies["errands_session"].value
        cookie = {"Cookie": f"errands_session={secret}"}
        async with http.get(f"{intake}/console/recipients/{recipient['id']}", headers=cookie) as response:
            assert response.status == 404
            assert "Private Person" not in await response.text()
        async with http.get(f"{intake}/console/recipients?q=private", headers=cookie) as response:
            assert response.status == 200
            assert recipient["id"] not in await response.text()
        async with http.get(f"{intake}/console/board", headers=cookie) as response:
            assert response.status == 200
            assert task["legs"][0]["id"] not in await response.text()
        # Assigning the other organisation's leg is refused by the dispatcher as not found.
        async with http.post(
            f"{intake}/console/board/assign",
            data={
                "csrf_token": session["csrf_token"],
                "leg_id": task["legs"][0]["id"],
                "volunteer_id": str(uuid.uuid4()),
            },
            headers=cookie,
        ) as response:
            assert response.status == 404
        async with http.post(
            f"{intake}/console/recipients/{recipient['id']}/erase",
            data={"csrf_token": session["csrf_token"], "sure": "on"},
            headers=cookie,
            allow_redirects=False,
        ) as response:
            assert response.status == 404
        async with http.get(
            f"{intake}/v1/recipients/{recipient['id']}", headers=bearer(ours["operator_token"])
        ) as response:
            assert response.status == 200, "still there"


async def test_a_refused_assignment_asks_for_the_reason_and_goes_through_with_it(
    stack: Stack, system: ServiceProcesses
) -> None:
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    tokens = await admin.bootstrap_demo(stack.settings())
    operator = bearer(tokens["operator_token"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        # Insurance ended yesterday: the dispatcher refuses a hand assignment unless a reason is given.
        volunteer = await on_duty_volunteer(
            http,
            dispatcher,
            operator,
            "Lapsed Cover",
            29.9,
            121.5,
            insured_until=datetime.now(UTC).date() - timedelta(days=1),
        )
        try:
            task = await far_task(http, intake, operator, "override")
            leg_id = task["legs"][0]["id"]
            email = await new_coordinator(http, intake, tokens["admin_token"], tokens["organisation_id"])
            async with http.post(
                f"{intake}/v1/sessions", json={"email": email, "password": PASSWORD}
            ) as response:
                session = await _json(response)
                cookie = {
                    "Cookie": f"errands_session={response.cookies['errands_session'].value}",
                    "Accept-Language": "en",
                }
            form = {"csrf_token": session["csrf_token"], "leg_id": leg_id, "volunteer_id": volunteer["id"]}
            async with http.post(f"{intake}/console/board/assign", data=form, headers=cookie) as response:
                assert response.status == 409
                page = await response.text()
            assert t("en", "board.error.refused") in page
            assert 'name="override_reason"' in page and t("en", "board.override_reason") in page
            assert await leg_holder(http, intake, operator, task["id"]) is None

            form["override_reason"] = "cover renewed, paper copy seen"
            async with http.post(
                f"{intake}/console/board/assign", data=form, headers=cookie, allow_redirects=False
            ) as response:
                assert response.status == 303, await response.text()
                assert response.headers["Location"] == "/console/board?notice=assigned"
            assert await until(
                lambda: _holder_is(http, intake, operator, task["id"], volunteer["id"]),
                timeout_s=30,
                what="assigned with an override",
            )
            # Without the session's CSRF token nothing is sent to the dispatcher.
            async with http.post(
                f"{intake}/console/board/move",
                data={"from_volunteer_id": volunteer["id"], "to_volunteer_id": str(uuid.uuid4())},
                headers=cookie,
            ) as response:
                assert response.status == 403
        finally:
            async with http.put(
                f"{dispatcher}/v1/me/duty", json={"on_duty": False}, headers=bearer(volunteer["token"])
            ) as response:
                assert response.status == 200
