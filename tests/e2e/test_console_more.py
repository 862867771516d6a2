"""More of the operator console in a real headless Chromium on the real stack: a leg moved to another
volunteer, a handed-back leg handed over, a flagged delivery confirmed, a task cancelled, each from the
task's page and checked through the API; the sound for new escalations; the login's lockout in words."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from errands.launcher import ServiceProcesses
from tests.client import until
from tests.conftest import Stack
from tests.e2e.test_console import (
    body_text,
    leg_card_text,
    log_in,
    new_coordinator,
    no_violations,
    tick,
)
from tests.e2e.test_leg_decisions import Desk, far_place
from tests.pages import DESKTOP, PHONE, by_label, by_text, chromium, needs_chromium, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture
def intake(system: ServiceProcesses) -> str:
    return system.url("intake")


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "desktop", size=DESKTOP, language="en") as driver:
        yield driver


def action_form(driver: Any, heading: str) -> Any:
    """The task page's form whose heading is `heading`."""
    for form in driver.find_elements(By.CSS_SELECTOR, "main form"):
        found = form.find_elements(By.TAG_NAME, "h3")
        if found and found[0].text.strip() == heading:
            return form
    raise AssertionError(f"no form {heading!r}")


def choose_in(form: Any, label: str, value: str) -> None:
    for element in form.find_elements(By.TAG_NAME, "label"):
        if element.text.strip() == label:
            Select(form.find_element(By.ID, element.get_attribute("for"))).select_by_value(value)
            return
    raise AssertionError(f"no {label!r} in the form")


def spy_on_the_cue(driver: Any) -> None:
    """Count the escalation sound's plays in the page, without making a sound."""
    driver.execute_script(
        "window.__plays = 0;"
        " document.getElementById('escalation-cue').play ="
        " function () { window.__plays += 1; return Promise.resolve(); };"
    )


def plays(driver: Any) -> int:
    return int(driver.execute_script("return window.__plays;"))


async def test_a_leg_is_moved_handed_over_and_a_flagged_delivery_confirmed_from_the_task_page(
    stack: Stack, system: ServiceProcesses, intake: str, desktop: Any
) -> None:
    coordinator = await new_coordinator(stack, intake)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        desk = Desk(http, system, coordinator.operator_token)
        ann = await desk.volunteer("Ann Carrier", at=None)
        bo = await desk.volunteer("Bo Carrier", at=None)
        ann_id, bo_id = await desk.volunteer_id(ann), await desk.volunteer_id(bo)
        task = await desk.submit(far_place(), dropoffs=2)
        legs = sorted(task["legs"], key=lambda leg: leg["index"])
        codes = [leg["confirmation_code"] for leg in legs]
        await desk.legs_known(task)
        for leg in legs:
            await desk.assign(leg["id"], ann)
        await desk.task_shows(task["id"], legs=["assigned", "assigned"])

        await log_in(
            desktop, intake, coordinator, email_label="E-mail", password_label="Password", submit="Log in"
        )
        desktop.get(f"{intake}/console/tasks/{task['id']}")
        await wait_for(desktop, lambda d: "Move drop-off 1 to another volunteer" in body_text(d))

        # Nobody hears anything until they switch the sound on; the switch is remembered.
        spy_on_the_cue(desktop)
        toggle = by_text(desktop, "Sound for new escalations: off", tag="button")
        assert toggle.get_attribute("aria-pressed") == "false"
        toggle.click()
        await wait_for(desktop, lambda d: "Sound for new escalations: on" in body_text(d))
        assert toggle.get_attribute("aria-pressed") == "true"
        assert plays(desktop) == 1, "heard once on switching it on"
        no_violations(desktop)

        # Drop-off 1 moves from Ann to Bo (both off duty: it takes a reason).
        move = action_form(desktop, "Move drop-off 1 to another volunteer")
        choose_in(move, "Volunteer", bo_id)
        move.find_element(By.NAME, "override_reason").send_keys("Ann is ill today")
        move.find_element(By.TAG_NAME, "button").click()
        await wait_for(desktop, lambda d: "Moved to the new volunteer." in body_text(d))
        await wait_for(desktop, lambda d: "Bo Carrier" in leg_card_text(d, 1))
        shown = await desk.task_shows(task["id"], legs=["assigned", "assigned"])
        assert shown["legs"][0]["volunteer"]["id"] == bo_id
        assert legs[0]["id"] in await desk.legs_in_hand(bo)
        assert legs[0]["id"] not in await desk.legs_in_hand(ann)

        # Still switched on after the page changed; Bo hands the leg back after pickup: the escalation
        # count rises on its next poll, and the cue plays.
        assert by_text(desktop, "Sound for new escalations: on", tag="button").get_attribute(
            "aria-pressed"
        ) == ("true")
        spy_on_the_cue(desktop)
        assert (await desk.me(bo, "picked-up", legs[0]["id"]))[0] == 200
        assert (await desk.me(bo, "problem", legs[0]["id"], {"reason": "flat tyre"}))[0] in (200, 202)
        await wait_for(desktop, lambda d: d.title.startswith("(1)"), timeout_s=40)
        await wait_for(desktop, lambda d: plays(d) == 1)

        # Handed over where the goods are, to Ann.
        desktop.get(f"{intake}/console/tasks/{task['id']}")
        await wait_for(desktop, lambda d: "Decide about drop-off 1" in body_text(d))
        no_violations(desktop)
        decide = action_form(desktop, "Decide about drop-off 1")
        tick(desktop, "Decision", "Hand over where they are")
        choose_in(decide, "Hand over to (hand over only)", ann_id)
        decide.find_element(By.NAME, "note").send_keys("Ann meets Bo at the corner")
        decide.find_element(By.TAG_NAME, "button").click()
        await wait_for(desktop, lambda d: "Your decision is recorded." in body_text(d))
        shown = await desk.task_shows(task["id"], legs=["assigned", "assigned"])
        assert shown["legs"][0]["volunteer"]["id"] == ann_id
        assert legs[0]["id"] in await desk.legs_in_hand(ann)

        # Drop-off 2: wrong codes until the delivery is flagged; the coordinator confirms it by other
        # proof, from the page.
        assert (await desk.me(ann, "picked-up", legs[1]["id"]))[0] == 200
        wrong = f"{(int(codes[1]) + 1) % 10 ** len(codes[1]):0{len(codes[1])}d}"

        async def flagged() -> bool:
            status, body = await desk.me(ann, "delivered", legs[1]["id"], {"confirmation_code": wrong})
            return status == 409 and "wrong confirmation codes" in body["detail"]

        await until(flagged, what="the delivery flagged", timeout_s=30, every_s=0.5)
        desktop.get(f"{intake}/console/tasks/{task['id']}")

        async def decision_offered() -> bool:
            desktop.refresh()
            return "Decide about drop-off 2" in body_text(desktop)

        await until(decision_offered, what="the flagged delivery offered for a decision", timeout_s=30)
        assert "This delivery was flagged (wrong confirmation codes)." in body_text(desktop)
        no_violations(desktop)
        confirm = action_form(desktop, "Decide about drop-off 2")
        tick(desktop, "Decision", "Confirm by other proof")
        confirm.find_element(By.NAME, "note").send_keys("Recipient confirmed by phone")
        confirm.find_element(By.TAG_NAME, "button").click()
        await wait_for(desktop, lambda d: "Your decision is recorded." in body_text(d))
        await desk.task_shows(task["id"], legs=["assigned", "confirmed"])


async def test_a_task_is_cancelled_from_its_page(
    stack: Stack, system: ServiceProcesses, intake: str, desktop: Any
) -> None:
    coordinator = await new_coordinator(stack, intake)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        desk = Desk(http, system, coordinator.operator_token)
        task = await desk.submit(far_place(), dropoffs=1)
        await log_in(
            desktop, intake, coordinator, email_label="E-mail", password_label="Password", submit="Log in"
        )
        desktop.get(f"{intake}/console/tasks/{task['id']}")
        await wait_for(desktop, lambda d: "Cancel the task" in body_text(d))
        by_label(desktop, "Reason (optional)").send_keys("The recipient is in hospital")
        by_text(desktop, "Cancel this task", tag="button").click()
        await wait_for(desktop, lambda d: "The task is cancelled." in body_text(d))
        assert "Cancel the task" not in body_text(desktop), "a finished task offers no actions"
        no_violations(desktop)
        shown = await desk.task(task["id"])
        assert shown["status"] == "cancelled"


@pytest.mark.parametrize(
    ("language", "email_label", "password_label", "submit", "throttled", "wait"),
    [
        ("ko", "이메일", "비밀번호", "로그인", "잘못된 비밀번호가 너무 많습니다.", r"\d+초 후에"),
        ("ja", "メールアドレス", "パスワード", "ログイン", "パスワードの誤りが多すぎます。", r"\d+ 秒後"),
    ],
)
async def test_too_many_wrong_passwords_are_told_in_the_staffs_language_with_the_wait(
    stack: Stack,
    intake: str,
    tmp_path: Path,
    language: str,
    email_label: str,
    password_label: str,
    submit: str,
    throttled: str,
    wait: str,
) -> None:
    coordinator = await new_coordinator(stack, intake)
    with chromium(tmp_path / language, size=PHONE, language=language) as phone:
        phone.get(f"{intake}/console/login")
        await wait_for(phone, lambda d: by_label(d, email_label))
        assert phone.find_element(By.TAG_NAME, "html").get_attribute("lang") == language
        answers = []
        for _ in range(8):
            by_label(phone, email_label).clear()
            by_label(phone, email_label).send_keys(coordinator.email)
            by_label(phone, password_label).send_keys("not the password")
            phone.execute_script("window.__before = true;")
            by_text(phone, submit, tag="button").click()
            await wait_for(phone, lambda d: not d.execute_script("return window.__before === true;"))
            await wait_for(phone, lambda d: d.find_elements(By.CSS_SELECTOR, ".problem"))
            answers.append(body_text(phone))
            if throttled in answers[-1]:
                break
        assert throttled not in answers[0], "the first wrong password is only wrong"
        assert throttled in answers[-1], answers[-1]
        assert re.search(wait, answers[-1]), answers[-1]
        no_violations(phone)


async def test_the_new_task_form_finds_a_recipient_and_a_place_beyond_the_first_page(
    stack: Stack, system: ServiceProcesses, intake: str, desktop: Any
) -> None:
    coordinator = await new_coordinator(stack, intake)
    here = far_place()
    headers = {"Authorization": f"Bearer {coordinator.operator_token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), headers=headers) as http:
        for n in range(205):
            async with http.post(
                f"{intake}/v1/recipients",
                json={
                    "name": f"Person{n:03d} Family",
                    "address": f"{n} Long Road",
                    "lat": here[0],
                    "lon": here[1],
                },
            ) as response:
                assert response.status == 201, await response.text()
            async with http.post(
                f"{intake}/v1/places", json={"name": f"Kitchen {n:03d}", "lat": here[0], "lon": here[1]}
            ) as response:
                assert response.status == 201, await response.text()
        # Which ones lie beyond the first page, in the register's own order.
        async with http.get(f"{intake}/v1/recipients?limit=200") as response:
            first = await response.json()
        async with http.get(f"{intake}/v1/recipients?limit=200&cursor={first['next_cursor']}") as response:
            beyond = (await response.json())["items"]
        async with http.get(f"{intake}/v1/recipients/{beyond[0]['id']}") as response:
            wanted = await response.json()
        async with http.get(f"{intake}/v1/places?limit=200") as response:
            first_places = {item["name"] for item in (await response.json())["items"]}
        absent = next(f"Kitchen {n:03d}" for n in range(205) if f"Kitchen {n:03d}" not in first_places)

        await log_in(
            desktop, intake, coordinator, email_label="E-mail", password_label="Password", submit="Log in"
        )
        desktop.get(f"{intake}/console/tasks/new")
        await wait_for(desktop, lambda d: by_label(d, "Recipient of the register"))
        assert "Only the first 200 are listed; find the one you need." in body_text(desktop)

        def values(label: str) -> list[str]:
            return [str(o.get_attribute("value")) for o in Select(by_label(desktop, label)).options[1:]]

        def texts(label: str) -> list[str]:
            return [str(o.text) for o in Select(by_label(desktop, label)).options[1:]]

        assert len(values("Recipient of the register")) == 200
        assert wanted["id"] not in values("Recipient of the register")
        assert absent not in texts("Saved place")

        # A place by words of its name, from a plain GET (no script needed).
        desktop.get(f"{intake}/console/tasks/new?find=" + absent.replace(" ", "+"))
        await wait_for(desktop, lambda d: "Found: 1 saved places, 0 recipients." in body_text(d))
        assert texts("Saved place") == [absent]
        tick(desktop, "Pick up from", "a saved place")
        Select(by_label(desktop, "Saved place")).select_by_visible_text(absent)
        by_label(desktop, "Notes").send_keys("Ring twice")

        # The recipient by their name, with the form's Find button: what was typed and chosen stays
        # (with scripts, only the form comes back; the same request works as a plain form without).
        desktop.execute_script("window.__samePage = true;")
        by_label(desktop, "Name, address, phone or e-mail").clear()
        by_label(desktop, "Name, address, phone or e-mail").send_keys(wanted["name"].split()[0])
        by_text(desktop, "Find", tag="button").click()
        await wait_for(desktop, lambda d: "Found: 0 saved places, 1 recipients." in body_text(d))
        assert values("Recipient of the register") == [wanted["id"]]
        assert texts("Saved place") == [absent], "the chosen place stays choosable"
        assert by_label(desktop, "Notes").get_attribute("value") == "Ring twice"
        assert desktop.execute_script("return window.__samePage === true;"), "htmx swapped the form in place"
        assert not by_label(desktop, "Latitude").is_displayed(), "the fields of other choices stay hidden"
        no_violations(desktop)

        Select(by_label(desktop, "Recipient of the register")).select_by_value(wanted["id"])
        by_text(desktop, "Create task", tag="button").click()
        await wait_for(desktop, lambda d: "Task created" in body_text(d))
        async with http.get(f"{intake}/v1/tasks?limit=10") as response:
            tasks = (await response.json())["items"]
        assert len(tasks) == 1
        async with http.get(f"{intake}/v1/tasks/{tasks[0]['id']}") as response:
            task = await response.json()
        assert task["legs"][0]["dropoff"]["recipient_name"] == wanted["name"]


I18N = Path(__file__).resolve().parents[2] / "services" / "intake" / "entrypoints" / "i18n"
RAW_KEY = re.compile(r"\b[a-z][a-z_]*\.[a-z_]+(?:\.[a-z_]+)*\b")


def catalogue(language: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in sorted(I18N.glob(f"{language}*.json")):
        found |= json.loads(part.read_text(encoding="utf-8"))
    return found


def untranslated(text: str, language: str) -> list[str]:
    """Catalogue keys shown as they are, and English texts (the parts between placeholders) shown
    where the language says something else."""
    own, english = catalogue(language), catalogue("en")
    keys = [key for key in RAW_KEY.findall(text) if key in own]
    shown = []
    for key, value in english.items():
        if own.get(key) == value:
            continue
        for fragment in re.split(r"\{[a-z_]+\}", value):
            fragment = fragment.strip(" .,:;·…()")
            if len(fragment) >= 8 and fragment in text:
                shown.append(f"{key}: {fragment}")
    return keys + shown


@pytest.mark.parametrize(
    ("language", "email_label", "password_label", "submit"),
    [("ko", "이메일", "비밀번호", "로그인"), ("ja", "メールアドレス", "パスワード", "ログイン")],
)
async def test_every_console_screen_in_korean_and_japanese_on_a_phone(
    stack: Stack,
    system: ServiceProcesses,
    intake: str,
    tmp_path: Path,
    language: str,
    email_label: str,
    password_label: str,
    submit: str,
) -> None:
    coordinator = await new_coordinator(stack, intake)
    here = far_place()
    headers = {"Authorization": f"Bearer {coordinator.operator_token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(
            f"{intake}/v1/recipients",
            json={"name": "王芳", "address": "幸福小区 3 号楼", "lat": here[0], "lon": here[1]},
        ) as response:
            assert response.status == 201
            recipient = await response.json()
        async with http.post(
            f"{intake}/v1/places", json={"name": "海曙食物银行", "lat": here[0], "lon": here[1]}
        ) as response:
            assert response.status == 201
        desk = Desk(http, system, coordinator.operator_token)
        task = await desk.submit(here, dropoffs=1)
        await desk.volunteer("李华", at=None)
    with chromium(tmp_path / language, size=PHONE, language=language) as phone:
        phone.get(f"{intake}/console/login")
        await wait_for(phone, lambda d: by_label(d, email_label))
        screens = {"login": body_text(phone)}
        no_violations(phone)
        by_label(phone, email_label).send_keys(coordinator.email)
        by_label(phone, password_label).send_keys("a long enough password")
        by_text(phone, submit, tag="button").click()
        await wait_for(phone, lambda d: coordinator.email in body_text(d))
        for path in (
            "/console/tasks",
            f"/console/tasks/{task['id']}",
            "/console/tasks/new",
            "/console/board",
            "/console/volunteers",
            "/console/recipients",
            f"/console/recipients/{recipient['id']}",
            "/console/places",
            "/console/schedules",
            "/console/files",
            f"/console/tasks/{uuid.uuid4()}",
            "/password-setup",
        ):
            phone.get(f"{intake}{path}")
            await wait_for(phone, lambda d: d.find_elements(By.TAG_NAME, "main"))
            assert phone.find_element(By.TAG_NAME, "html").get_attribute("lang") == language
            no_violations(phone)
            screens[path] = body_text(phone)
        problems = {path: untranslated(text, language) for path, text in screens.items()}
        assert {path: found for path, found in problems.items() if found} == {}


BOARD_STATE = """
return {
  volunteers: Array.from(document.querySelectorAll('.volunteer-col')).map(
    (c) => [c.dataset.volunteerId, c.dataset.lat || '', c.dataset.lon || '',
            c.querySelectorAll('.leg-card').length]),
  queue: Array.from(document.querySelectorAll('.queue .leg-card')).map((c) => c.dataset.legId),
  held: Array.from(document.querySelectorAll('.volunteer-col .leg-card')).map((c) => c.innerText),
};
"""


async def test_make_runs_demo_moves_volunteers_and_legs_on_the_board(
    stack: Stack, intake: str, system: ServiceProcesses, desktop: Any
) -> None:
    """`make run`'s demo, as the launcher starts it (its own settings), in a coordinator's organisation."""
    from errands.simulation.run import BackgroundSimulation, demo_config

    coordinator = await new_coordinator(stack, intake)
    local = {
        "intake_url": intake,
        "dispatcher_url": system.url("dispatcher"),
        "operator_token": coordinator.operator_token,
    }
    demo = BackgroundSimulation(demo_config(local)).start()
    try:
        await log_in(
            desktop, intake, coordinator, email_label="E-mail", password_label="Password", submit="Log in"
        )
        desktop.get(f"{intake}/console/board")
        await wait_for(desktop, lambda d: d.execute_script(BOARD_STATE)["volunteers"], timeout_s=60)
        first = desktop.execute_script(BOARD_STATE)
        where = {v[0]: (v[1], v[2]) for v in first["volunteers"]}
        desktop.execute_script("window.__samePage = true;")

        def moved(d: Any) -> bool:
            now = d.execute_script(BOARD_STATE)
            return any(v[0] in where and (v[1], v[2]) != where[v[0]] and v[1] for v in now["volunteers"])

        await wait_for(desktop, moved, timeout_s=120)
        await wait_for(desktop, lambda d: d.execute_script(BOARD_STATE)["held"], timeout_s=120)
        held = desktop.execute_script(BOARD_STATE)["held"]
        await wait_for(desktop, lambda d: d.execute_script(BOARD_STATE)["held"] != held, timeout_s=120)
        assert desktop.execute_script("return window.__samePage === true;"), "it moved without a reload"
        assert demo.error is None, demo.error
    finally:
        demo.stop(timeout_s=10)
