"""The volunteer app in a real headless Chromium at phone size, on the real stack.

A volunteer enrols from a link, goes on duty, takes an offer, loses the network, picks up and
delivers (with a code, and with a photo) offline, and the server records the times the things were
done once the connection returns; replaying the same outbox again changes nothing. An unanswered
offer disappears when it expires. Every text comes from the catalogue, in each language.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import string
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from sqlalchemy import text

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.entrypoints.app import CATALOGUE
from shared.db import create_engine, create_sessionmaker
from shared.web.i18n import LANGUAGE_NAMES, LANGUAGES
from tests.client import bearer, until
from tests.conftest import Stack
from tests.pages import PHONE, axe_violations, by_label, by_text, chromium, needs_chromium, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def screenshot(driver: Any, screen: str, tmp_path: Path, *, showing: str | None = None) -> None:
    """The screen as it stands (from the top, or from the element with id `showing`), kept in
    docs/img only when ERRANDS_SCREENSHOTS=1."""
    if showing is None:
        driver.execute_script("window.scrollTo(0, 0);")
    else:
        driver.execute_script(
            "const el = document.getElementById(arguments[0]);"
            "window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 70);",
            showing,
        )
    path = tmp_path / f"volunteer-app-{screen}.png"
    assert driver.save_screenshot(str(path))
    if os.environ.get("ERRANDS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "chromium-profile", size=PHONE, language="en") as driver:
        yield driver


class Centre:
    """The operator's side, over the API: volunteers, their enrolment links, tasks."""

    def __init__(self, http: aiohttp.ClientSession, intake: str, dispatcher: str, operator: str) -> None:
        self.http, self.intake, self.dispatcher, self.operator = http, intake, dispatcher, operator

    async def volunteer(self, name: str) -> str:
        async with self.http.post(
            f"{self.dispatcher}/v1/volunteers",
            json={
                "name": name,
                "phone": "+8613800007777",
                "vehicle": "ebike",
                "capacity_kg": 20,
                "insured": True,
                "max_active_legs": 2,
            },
            headers=bearer(self.operator),
        ) as response:
            assert response.status == 201, await response.text()
            return str((await response.json())["id"])

    async def enrolment_link(self, volunteer_id: str) -> str:
        """The one-time link, on this stack's dispatcher (ENROLMENT_URL names the public address)."""
        async with self.http.post(
            f"{self.dispatcher}/v1/volunteers/{volunteer_id}/enrolment", headers=bearer(self.operator)
        ) as response:
            assert response.status == 201, await response.text()
            link = urlsplit((await response.json())["link"])
        return f"{self.dispatcher}{link.path}#{link.fragment}"

    async def located(self, volunteer_id: str) -> bool:
        async with self.http.get(
            f"{self.dispatcher}/v1/volunteers/{volunteer_id}", headers=bearer(self.operator)
        ) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        return bool(body["on_duty"] and body["location"] and body["location"]["lat"] is not None)

    async def task(self, place: tuple[float, float], recipient: str, kind: str = "meal") -> dict[str, Any]:
        lat, lon = place
        async with self.http.post(
            f"{self.intake}/v1/tasks",
            json={
                "kind": kind,
                "priority": "urgent",
                "pickup": {"lat": lat, "lon": lon, "address": "Community kitchen, 3 Harbour Road"},
                "dropoffs": [
                    {
                        "lat": lat + 0.004,
                        "lon": lon + 0.004,
                        "address": "Flat 5, 12 Hill Street",
                        "recipient_name": f"{recipient} Example",
                        "recipient_phone": "+8613900001111",
                        "notes": "Ring twice",
                    }
                ],
                "items": [{"name": "hot meal", "quantity": 2, "weight_kg": 0.5}],
            },
            headers={**bearer(self.operator), "Idempotency-Key": str(uuid.uuid4())},
        ) as response:
            assert response.status == 201, await response.text()
            task: dict[str, Any] = await response.json()
        return task


@pytest.fixture
async def centre(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Centre]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        yield Centre(http, system.url("intake"), system.url("dispatcher"), tokens["operator_token"])


def place_phone(driver: Any, origin: str, lat: float, lon: float) -> None:
    """The phone's GPS, as Chromium's geolocation emulation, with the permission granted."""
    driver.execute_cdp_cmd("Browser.grantPermissions", {"origin": origin, "permissions": ["geolocation"]})
    driver.execute_cdp_cmd(
        "Emulation.setGeolocationOverride", {"latitude": lat, "longitude": lon, "accuracy": 10}
    )


def shows(text: str, tag: str = "button") -> Callable[[Any], Any]:
    """A condition for `wait_for`: something visible reads `text`."""

    def condition(driver: Any) -> Any:
        try:
            return by_text(driver, text, tag=tag)
        except AssertionError:
            return None

    return condition


def labelled(label: str) -> Callable[[Any], Any]:
    """A condition for `wait_for`: a visible control is labelled `label`."""

    def condition(driver: Any) -> Any:
        try:
            control = by_label(driver, label)
        except AssertionError:
            return None
        return control if control.is_displayed() else None

    return condition


def card(driver: Any, kind: str, ident: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-{kind}-id="{ident}"]')


def button_in(element: Any, label: str) -> Any:
    from selenium.webdriver.common.by import By

    for button in element.find_elements(By.XPATH, f".//button[normalize-space()='{label}']"):
        if button.is_displayed():
            return button
    raise AssertionError(f"no button {label!r} in the card")


def labelled_in(element: Any, label: str) -> Any:
    from selenium.webdriver.common.by import By

    found = element.find_element(By.XPATH, f".//label[normalize-space()='{label}']")
    return element.find_element(By.ID, found.get_attribute("for"))


def sync_badge(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    badge = driver.find_element(By.ID, "sync-badge")
    return str(badge.text) if badge.is_displayed() else ""


async def enrol_and_go_on_duty(driver: Any, centre: Centre, name: str, place: tuple[float, float]) -> str:
    volunteer_id = await centre.volunteer(name)
    link = await centre.enrolment_link(volunteer_id)
    place_phone(driver, centre.dispatcher, *place)
    driver.get(link)
    await wait_for(driver, shows("Go on duty"))
    assert "token=" not in driver.current_url, "the secret is taken out of the address bar"
    assert driver.execute_script("return localStorage.getItem('errands.token')"), "the device keeps its token"
    by_text(driver, "Go on duty", tag="button").click()
    await wait_for(driver, shows("Go off duty"))
    await until(
        lambda: centre.located(volunteer_id), what="the phone's location reached the server", timeout_s=30
    )
    return volunteer_id


async def accept_offer_for(driver: Any, task: dict[str, Any]) -> str:
    leg_id = task["legs"][0]["id"]

    def offer_card(d: Any) -> Any:
        from selenium.webdriver.common.by import By

        for element in d.find_elements(By.CSS_SELECTOR, "#offers li"):
            if element.is_displayed():
                return element
        return None

    def accepted(d: Any) -> bool:
        offer = offer_card(d)
        if offer is None:
            return False
        button_in(offer, "Accept").click()  # a card redrawn meanwhile is looked up again
        return True

    await wait_for(driver, accepted)
    await wait_for(driver, lambda d: card(d, "leg", leg_id).is_displayed())
    return str(leg_id)


async def leg_times(stack: Stack, leg_ids: list[str]) -> dict[str, tuple[str, datetime, datetime]]:
    engine = create_engine(stack.settings(), pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.execute(
                text("SELECT id, status, picked_up_at, delivered_at FROM dispatch.legs WHERE id = ANY(:ids)"),
                {"ids": [uuid.UUID(i) for i in leg_ids]},
            )
            return {str(row[0]): (str(row[1]), row[2], row[3]) for row in rows}
    finally:
        await engine.dispose()


async def photos_of(stack: Stack, leg_id: str) -> int:
    engine = create_engine(stack.settings(), pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM dispatch.photos WHERE leg_id = :leg"), {"leg": uuid.UUID(leg_id)}
            )
            return int(count or 0)
    finally:
        await engine.dispose()


def jpeg(path: Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (2400, 1800), (180, 120, 60)).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue())
    return path


SNAPSHOT_OUTBOX = """
const done = arguments[arguments.length - 1];
const open = indexedDB.open("errands-app");
open.onsuccess = () => {
  const request = open.result.transaction("outbox").objectStore("outbox").getAll();
  request.onsuccess = () => {
    window.__outbox = request.result;
    open.result.close();
    done(request.result.length);
  };
};
"""
COUNT_OUTBOX = """
const done = arguments[arguments.length - 1];
const open = indexedDB.open("errands-app");
open.onsuccess = () => {
  const request = open.result.transaction("outbox").objectStore("outbox").count();
  request.onsuccess = () => { open.result.close(); done(request.result); };
};
"""
REPLAY_SNAPSHOT = """
const done = arguments[arguments.length - 1];
const open = indexedDB.open("errands-app");
open.onsuccess = () => {
  const tx = open.result.transaction("outbox", "readwrite");
  for (const entry of window.__outbox) tx.objectStore("outbox").put(entry);
  tx.oncomplete = () => { open.result.close(); window.dispatchEvent(new Event("online")); done(true); };
};
"""


async def test_offline_deliveries_sync_with_the_times_they_were_done(
    stack: Stack, centre: Centre, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    place = (64.1466, -21.9426)  # far from every other volunteer of the suite
    await enrol_and_go_on_duty(browser, centre, "Sigrun Example", place)
    assert axe_violations(browser) == []
    screenshot(browser, "duty", tmp_path)

    first = await centre.task(place, "Anna")
    offer_text = await wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#offers li").text)
    assert "Expires in" in offer_text and "Urgent" in offer_text and "Meal" in offer_text
    assert "Flat 5" not in offer_text, "no full drop-off address before the offer is accepted"
    assert axe_violations(browser) == []
    screenshot(browser, "offer", tmp_path, showing="offers-title")
    leg_a = await accept_offer_for(browser, first)
    second = await centre.task(place, "Bjorn", kind="errand")
    leg_b = await accept_offer_for(browser, second)

    a = card(browser, "leg", leg_a)
    assert "Flat 5, 12 Hill Street" in a.text and "Anna" in a.text and "Ring twice" in a.text
    assert "Example" not in a.text, "the recipient's first name only"
    navigate = a.find_element(By.XPATH, ".//a[normalize-space()='Navigate']")
    assert navigate.get_attribute("href").startswith("geo:")
    legs_order = [
        e.get_attribute("data-leg-id") for e in browser.find_elements(By.CSS_SELECTOR, "#legs > li")
    ]
    assert legs_order.index(leg_a) < legs_order.index(leg_b), "in the order the API gives them"
    assert axe_violations(browser) == []
    screenshot(browser, "legs", tmp_path, showing="legs-title")

    # No network at all from here.
    browser.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    await wait_for(browser, shows("Offline", tag="p"))
    before = datetime.now(UTC)
    button_in(card(browser, "leg", leg_a), "Picked up").click()
    await wait_for(browser, lambda d: labelled_in(card(d, "leg", leg_a), "Confirmation code"))
    code_field = labelled_in(card(browser, "leg", leg_a), "Confirmation code")
    assert code_field.get_attribute("inputmode") == "numeric"
    code_field.send_keys(first["legs"][0]["confirmation_code"])
    button_in(card(browser, "leg", leg_a), "Delivered").click()

    button_in(card(browser, "leg", leg_b), "Picked up").click()
    photo_field = await wait_for(
        browser, lambda d: labelled_in(card(d, "leg", leg_b), "No-contact drop-off: photo instead of a code")
    )
    assert photo_field.get_attribute("capture") == "environment"
    photo_field.send_keys(str(jpeg(tmp_path / "doorstep.jpg")))
    await wait_for(browser, lambda d: "Photo ready" in card(d, "leg", leg_b).text)
    button_in(card(browser, "leg", leg_b), "Delivered").click()
    done_offline = datetime.now(UTC)

    await wait_for(browser, lambda d: sync_badge(d) == "Waiting to sync (4)")
    assert "Waiting to sync" in card(browser, "leg", leg_a).text

    # Opened again with no network: the service worker has the app, the phone its last assignments.
    browser.refresh()
    await wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    await wait_for(browser, lambda d: sync_badge(d) == "Waiting to sync (4)")
    await wait_for(browser, lambda d: "Shown as last synced at" in d.find_element(By.ID, "legs-stale").text)
    assert "Waiting to sync" in card(browser, "leg", leg_a).text
    assert "Delivered: waiting for confirmation" in card(browser, "leg", leg_b).text
    assert browser.execute_async_script(SNAPSHOT_OUTBOX) == 4
    queued_photo = browser.execute_script(
        "return window.__outbox.filter((e) => e.photo).map((e) => [e.photo.type, e.photo.size]);"
    )
    assert len(queued_photo) == 1 and queued_photo[0][0] == "image/jpeg"
    assert axe_violations(browser) == []
    screenshot(browser, "offline", tmp_path, showing="legs-title")

    # Still nothing on the server; then the connection returns, well after the deliveries.
    assert {s for s, _, _ in (await leg_times(stack, [leg_a, leg_b])).values()} == {"assigned"}
    await until(
        lambda: datetime.now(UTC) > done_offline + timedelta(seconds=3), what="time passed", timeout_s=10
    )
    reconnected = datetime.now(UTC)
    browser.delete_network_conditions()
    browser.execute_script("window.dispatchEvent(new Event('online'));")
    await wait_for(browser, lambda d: sync_badge(d) == "")

    async def recorded() -> dict[str, tuple[str, datetime, datetime]] | None:
        times = await leg_times(stack, [leg_a, leg_b])
        return times if all(t[2] is not None for t in times.values()) else None

    times = await until(recorded, what="both deliveries recorded", timeout_s=30)
    for leg in (leg_a, leg_b):
        status, picked_up_at, delivered_at = times[leg]
        assert status in ("delivered", "confirmed"), status
        assert before <= picked_up_at <= delivered_at <= done_offline < reconnected, (leg, times[leg])
    assert await photos_of(stack, leg_b) == 1

    # The same outbox replayed once more: every action answers from its Idempotency-Key's record.
    browser.execute_async_script(REPLAY_SNAPSHOT)
    await wait_for(browser, lambda d: d.execute_async_script(COUNT_OUTBOX) == 0)
    await wait_for(browser, lambda d: sync_badge(d) == "")
    again = await leg_times(stack, [leg_a, leg_b])
    assert {leg: t[1:] for leg, t in again.items()} == {leg: t[1:] for leg, t in times.items()}
    assert await photos_of(stack, leg_b) == 1
    notice = browser.find_element(By.ID, "notice")
    assert not (notice.is_displayed() and "Not accepted" in notice.text), notice.text


async def test_an_unanswered_offer_disappears_when_it_expires(
    centre: Centre, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    place = (78.2232, 15.6267)  # far from every other volunteer of the suite
    await enrol_and_go_on_duty(browser, centre, "Ola Example", place)
    await centre.task(place, "Kari")
    offer_id = await wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "#offers li").get_attribute("data-offer-id")
    )
    announcer = browser.find_element(By.ID, "offer-announcer")
    assert announcer.get_attribute("aria-live") == "assertive"
    await wait_for(browser, lambda d: "10 sec" in d.find_element(By.ID, "offer-announcer").text, timeout_s=90)
    await wait_for(
        browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-offer-id="{offer_id}"]'), timeout_s=30
    )
    assert "no longer open" in browser.find_element(By.ID, "offer-announcer").get_attribute("textContent")
    by_text(browser, "Go off duty", tag="button").click()
    await wait_for(browser, shows("Go on duty"))


def shown_in(driver: Any, *, language: str) -> bool:
    return bool(driver.find_element("tag name", "html").get_attribute("lang") == language)


def visible_texts(driver: Any) -> list[str]:
    """The text of every element's own text nodes that a person sees."""
    texts: list[str] = driver.execute_script(
        """
        const out = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) {
          const node = walker.currentNode;
          const value = node.textContent.replace(/\\s+/g, " ").trim();
          const parent = node.parentElement;
          if (!value || !parent || parent.closest("[hidden]") || parent.closest("option")) continue;
          if (parent.getClientRects().length === 0 && !parent.closest(".visually-hidden")) continue;
          out.push(value);
        }
        return out;
        """
    )
    return texts


def from_catalogue(language: str) -> list[re.Pattern[str]]:
    patterns = []
    for template in CATALOGUE.texts[language].values():
        parts = []
        for literal, name, _, _ in string.Formatter().parse(template):
            parts.append(re.escape(literal))
            if name:
                parts.append(".+")
        patterns.append(re.compile("".join(parts), re.DOTALL))
    return patterns


async def test_every_text_comes_from_the_catalogue_in_each_language(centre: Centre, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    volunteer_id = await centre.volunteer("Mei Example")
    link = await centre.enrolment_link(volunteer_id)
    with chromium(tmp_path / "profile", size=PHONE, language="zh") as driver:
        driver.get(f"{centre.dispatcher}/app/")
        await wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh", (
            "Chinese by the browser"
        )
        welcome = set(visible_texts(driver))
        assert "注册链接" in welcome and "邀请码" in welcome
        driver.get(link)
        await wait_for(driver, shows("开始值班"))
        for language in ("zh", *[lang for lang in LANGUAGES if lang != "zh"]):
            if language != "zh":
                Select(driver.find_element(By.ID, "language")).select_by_visible_text(
                    LANGUAGE_NAMES[language]
                )
                await wait_for(driver, partial(shown_in, language=language))
            patterns = from_catalogue(language)
            shown = visible_texts(driver)
            assert shown, "the page shows text"
            foreign = [s for s in shown if not any(p.fullmatch(s) for p in patterns)]
            assert foreign == [], f"{language}: texts not from the catalogue: {foreign}"
            assert not [s for s in shown if re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", s)], "no raw keys"
            assert CATALOGUE.text(language, "duty.go_on") in shown
            assert axe_violations(driver) == []
        # Back to English, as the person chose, even after a reload.
        Select(driver.find_element(By.ID, "language")).select_by_visible_text("English")
        driver.refresh()
        await wait_for(driver, shows("Go on duty"))
        for control in ("Go on duty",):
            assert by_text(driver, control, tag="button")
        assert by_label(driver, "Language")
        token = driver.execute_script("return localStorage.getItem('errands.token')")
        by_text(driver, "Sign out this device", tag="button").click()
        await wait_for(driver, labelled("Enrolment link"))
        assert driver.execute_script("return localStorage.getItem('errands.token')") is None
        assert axe_violations(driver) == []
        screenshot(driver, "welcome", tmp_path)
    async with centre.http.get(f"{centre.dispatcher}/v1/me", headers=bearer(token)) as response:
        assert response.status == 401, "signing out revoked the device's token"


async def test_a_volunteer_who_signs_up_waits_for_approval(
    centre: Centre, browser: Any, tmp_path: Path
) -> None:

    async with centre.http.post(
        f"{centre.dispatcher}/v1/invite-codes", json={}, headers=bearer(centre.operator)
    ) as response:
        assert response.status == 201, await response.text()
        code = (await response.json())["code"]
    browser.get(f"{centre.dispatcher}/app/")
    await wait_for(browser, labelled("Invite code"))
    by_label(browser, "Invite code").send_keys(code)
    by_label(browser, "Your name").send_keys("Tomas Example")
    by_text(browser, "Sign up", tag="button").click()
    await wait_for(browser, shows("Waiting for approval", tag="h2"))
    assert axe_violations(browser) == []
    screenshot(browser, "pending", tmp_path)
    token = browser.execute_script("return localStorage.getItem('errands.token')")
    async with centre.http.get(f"{centre.dispatcher}/v1/me", headers=bearer(token)) as response:
        volunteer_id = (await response.json())["id"]
    async with centre.http.post(
        f"{centre.dispatcher}/v1/volunteers/{volunteer_id}/vetting",
        json={"identity_checked": True, "insured": True, "training_done": True, "decision": "approve"},
        headers=bearer(centre.operator),
    ) as response:
        assert response.status == 200, await response.text()
    by_text(browser, "Check again", tag="button").click()
    await wait_for(browser, shows("Go on duty"))
    assert (
        json.loads(browser.execute_script("return localStorage.getItem('errands.me')"))["me"]["id"]
        == volunteer_id
    )
