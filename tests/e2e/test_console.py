"""The operator console in a real headless Chromium against the real stack, used as a coordinator would:
by visible labels and texts, in Chinese (the default) and English."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests import photo_samples
from tests.conftest import Stack
from tests.pages import DESKTOP, PHONE, axe_violations, by_label, by_text, chromium, needs_chromium, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]

PASSWORD = "a long enough password"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@dataclass(frozen=True)
class Coordinator:
    email: str
    organisation_id: str
    operator_token: str


async def new_coordinator(
    stack: Stack, intake: str, *, role: str = "operator", organisation_id: str | None = None
) -> Coordinator:
    """An organisation (unless given) and a person of it with a password, made with the admin code."""
    settings = stack.settings()
    token = ""
    if organisation_id is None:
        organisation = await admin.new_organisation(settings, f"Console org {uuid.uuid4().hex[:8]}")
        organisation_id, token = organisation["id"], organisation["operator_token"]
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.org"
    person = await admin.new_person(settings, uuid.UUID(organisation_id), email=email, role=role)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{intake}/v1/password-setup",
            json={"token": person["setup"]["token"], "password": PASSWORD},
        ) as response,
    ):
        assert response.status == 204, await response.text()
    return Coordinator(email, organisation_id, token)


@pytest.fixture
def intake(system: ServiceProcesses) -> str:
    return system.url("intake")


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "phone", size=PHONE, language="zh") as driver:
        yield driver


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "desktop", size=DESKTOP, language="en") as driver:
        yield driver


def screenshot(driver: Any, name: str) -> None:
    """Docs' pictures, only when asked for (so ordinary runs never rewrite the committed files)."""
    if os.environ.get("ERRANDS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(DOCS_IMG / f"console-{name}.png"))


def body_text(driver: Any) -> str:
    """The page's visible text, read in one step (so a page being replaced meanwhile cannot fail it)."""
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


async def log_in(
    driver: Any, intake: str, who: Coordinator, *, email_label: str, password_label: str, submit: str
) -> None:
    driver.get(f"{intake}/console")
    await wait_for(driver, lambda d: by_label(d, email_label))
    by_label(driver, email_label).send_keys(who.email)
    by_label(driver, password_label).send_keys(PASSWORD)
    by_text(driver, submit, tag="button").click()
    await wait_for(driver, lambda d: who.email in body_text(d))


def no_violations(driver: Any) -> None:
    """No serious or critical axe violation, and nothing wider than the window (phone first)."""
    assert axe_violations(driver) == []
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth;")


async def test_log_in_see_who_and_log_out_leaves_nothing_behind(
    stack: Stack, intake: str, desktop: Any, phone: Any
) -> None:
    coordinator = await new_coordinator(stack, intake)

    # Chinese by default, on a phone: the login page, then the tasks with the person and role.
    phone.get(f"{intake}/console/tasks")
    await wait_for(phone, lambda d: "/console/login" in d.current_url)
    assert phone.find_element("tag name", "html").get_attribute("lang") == "zh"
    no_violations(phone)
    screenshot(phone, "login-phone")
    by_label(phone, "电子邮箱").send_keys(coordinator.email)
    by_label(phone, "密码").send_keys("not the password")
    by_text(phone, "登录", tag="button").click()
    await wait_for(phone, lambda d: "邮箱或密码错误" in body_text(d))
    no_violations(phone)
    by_label(phone, "密码").send_keys(PASSWORD)
    by_text(phone, "登录", tag="button").click()
    await wait_for(phone, lambda d: coordinator.email in body_text(d))
    assert "调度员" in body_text(phone)
    assert phone.current_url.endswith("/console/tasks")
    no_violations(phone)

    # A login form sent from another site is refused: nobody can log a person in as someone else.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{intake}/console/login",
            data={"email": coordinator.email, "password": PASSWORD, "next": "/console/tasks"},
            headers={"Origin": "https://elsewhere.example"},
            allow_redirects=False,
        ) as foreign,
    ):
        assert foreign.status == 403
        assert "errands_session" not in foreign.cookies

    # English on a desktop; the ops-only menu is hidden from nobody here, the operator sees every page.
    await log_in(
        desktop, intake, coordinator, email_label="E-mail", password_label="Password", submit="Log in"
    )
    text = body_text(desktop)
    assert "Coordinator" in text and "New task" in text and "Dispatch board" in text
    no_violations(desktop)

    # Logging out: the back button shows the login page, never the tasks again.
    by_text(desktop, "Log out", tag="button").click()
    await wait_for(desktop, lambda d: "You have logged out." in body_text(d))
    desktop.back()
    await wait_for(desktop, lambda d: "/console/login" in d.current_url, timeout_s=10)
    assert coordinator.email not in body_text(desktop)
    no_violations(desktop)


async def test_ops_sees_no_forms_and_a_wrong_role_gets_a_page_saying_so(
    stack: Stack, system: ServiceProcesses, intake: str, desktop: Any
) -> None:
    operator = await new_coordinator(stack, intake)
    ops = await new_coordinator(stack, intake, role="ops", organisation_id=operator.organisation_id)
    await log_in(desktop, intake, ops, email_label="E-mail", password_label="Password", submit="Log in")
    text = body_text(desktop)
    assert "Ops (read only)" in text
    assert "New task" not in text
    desktop.get(f"{intake}/console/tasks/new")
    await wait_for(desktop, lambda d: "Your role cannot use this page." in body_text(d))
    no_violations(desktop)

    # A task of the organisation: ops reads it all, and is offered no action.
    here = somewhere()
    async with aiohttp.ClientSession() as http:
        task = await Api(http, system, operator.operator_token).created(
            f"{intake}/v1/tasks",
            {
                "kind": "errand",
                "pickup": {"lat": here[0], "lon": here[1], "address": "Ops depot"},
                "dropoffs": [{"lat": here[0], "lon": here[1] + 0.002, "address": "Ops door"}],
            },
        )
    desktop.get(f"{intake}/console/tasks/{task['id']}")
    await wait_for(desktop, lambda d: "Timeline" in body_text(d))
    assert "Ops depot" in body_text(desktop)
    assert "Actions" not in body_text(desktop)
    assert desktop.find_elements("css selector", "main form") == []
    no_violations(desktop)


# The whole round: a task made in the console, followed live while a volunteer does it --------------


class Api:
    """What happens outside the browser, over HTTP: the register, the volunteers and their app."""

    def __init__(self, http: aiohttp.ClientSession, system: ServiceProcesses, operator_token: str) -> None:
        self.http = http
        self.intake = system.url("intake")
        self.dispatcher = system.url("dispatcher")
        self.operator = operator_token

    async def call(self, method: str, url: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.operator}", **kwargs.pop("headers", {})}
        async with self.http.request(method, url, headers=headers, **kwargs) as response:
            body = await response.json() if response.content_type.endswith("json") else await response.read()
            return response.status, body

    async def created(self, url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        key = {"Idempotency-Key": str(uuid.uuid4())} if url.endswith("/v1/tasks") else {}
        status, answer = await self.call("POST", url, token, json=body, headers=key)
        assert status == 201, answer
        return dict(answer)

    async def volunteer(
        self, name: str, place: tuple[float, float], *, insured: bool = True
    ) -> tuple[str, str]:
        """A volunteer on duty at `place`: their id and their app's token."""
        created = await self.created(
            f"{self.dispatcher}/v1/volunteers",
            {"name": name, "vehicle": "bicycle", "capacity_kg": 20, "insured": insured, "languages": ["zh"]},
        )
        token = created["token"]
        status, answer = await self.call(
            "PUT", f"{self.dispatcher}/v1/me/duty", token, json={"on_duty": True}
        )
        assert status == 200, answer
        lat, lon = place
        status, answer = await self.call(
            "POST", f"{self.dispatcher}/v1/me/location", token, json={"lat": lat, "lon": lon}
        )
        assert status == 202, answer
        return str(created["id"]), str(token)

    async def offer_of(self, token: str, leg_id: str) -> dict[str, Any]:
        for _ in range(60):
            status, body = await self.call("GET", f"{self.dispatcher}/v1/me/assignments?wait=5", token)
            assert status == 200, body
            for offer in body.get("offers", []):
                if offer["leg"]["id"] == leg_id:
                    return dict(offer)
        raise AssertionError(f"leg {leg_id} was never offered")

    async def me(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        status, body = await self.call(method, f"{self.dispatcher}/v1/me/{path}", token, **kwargs)
        assert 200 <= status < 300, (path, body)
        return body


def somewhere() -> tuple[float, float]:
    """A place of this test's own, far from every other test's volunteers."""
    return random.uniform(-40, 40), random.uniform(-160, 160)


def leg_card_text(driver: Any, number: int) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, f"leg-{number}").text)


def timeline_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, "ol.timeline").text)


def choose(driver: Any, label: str, *, value: str | None = None, text: str | None = None) -> None:
    from selenium.webdriver.support.ui import Select

    control = Select(by_label(driver, label))
    if value is not None:
        control.select_by_value(value)
    else:
        control.select_by_visible_text(str(text))


def tick(driver: Any, group: str, option: str) -> None:
    """The radio button `option` in the group whose legend is `group`."""
    from selenium.webdriver.common.by import By

    for fieldset in driver.find_elements(By.TAG_NAME, "fieldset"):
        legend = fieldset.find_elements(By.XPATH, "./legend")
        if legend and legend[0].text.strip() == group:
            for label in fieldset.find_elements(By.XPATH, "./div/label"):
                if label.text.strip() == option:
                    label.find_element(By.TAG_NAME, "input").click()
                    return
    raise AssertionError(f"no option {option!r} in {group!r}")


async def test_a_task_made_in_the_console_is_followed_live_to_its_photo_and_its_legs_are_handled_by_hand(
    stack: Stack, system: ServiceProcesses, intake: str, desktop: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    coordinator = await new_coordinator(stack, intake)
    here = somewhere()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        api = Api(http, system, coordinator.operator_token)
        await api.created(
            f"{intake}/v1/places",
            {
                "name": "Haishu food bank",
                "kind": "kitchen",
                "lat": here[0],
                "lon": here[1],
                "address": "1 Depot Road",
            },
        )
        recipient = await api.created(
            f"{intake}/v1/recipients",
            {
                "name": "Wang Fang",
                "phone": "+8613800001111",
                "address": "7 Garden Lane",
                "lat": here[0] + 0.004,
                "lon": here[1] + 0.004,
                "consent_given_at": "2026-01-01T00:00:00Z",
            },
        )
        _, lin = await api.volunteer("Lin Hui", here)

        # The coordinator makes the task: pickup at the food bank, to a recipient of the register.
        await log_in(
            desktop, intake, coordinator, email_label="E-mail", password_label="Password", submit="Log in"
        )
        by_text(desktop, "New task", tag="a").click()
        await wait_for(desktop, lambda d: by_label(d, "Kind"))
        no_violations(desktop)
        choose(desktop, "Kind", text="Meal")
        tick(desktop, "Priority", "Urgent")
        tick(desktop, "Pick up from", "a saved place")
        choose(desktop, "Saved place", text="Haishu food bank")
        choose(desktop, "Recipient of the register", value=recipient["id"])
        by_label(desktop, "Item 1 name").send_keys("Rice")
        by_label(desktop, "Item 1 quantity").send_keys("2")
        # A quantity that is no number is refused next to its field, in the staff's language.
        by_label(desktop, "Item 1 weight (kg)").send_keys("heavy")
        by_text(desktop, "Create task", tag="button").click()
        await wait_for(desktop, lambda d: "Please correct what is marked below." in body_text(d))
        weight = by_label(desktop, "Item 1 weight (kg)")
        assert weight.get_attribute("aria-invalid") == "true"
        assert "Enter a number." in desktop.find_element(By.ID, "items_0_weight_kg-error").text
        no_violations(desktop)
        weight.clear()
        weight.send_keys("5")
        screenshot(desktop, "new-task-desktop")

        # Sent twice with the same form (its Idempotency-Key): one task.
        sent = desktop.execute_script(
            "return Array.from(new FormData(document.querySelector('form[action=\"/console/tasks/new\"]')));"
        )
        by_text(desktop, "Create task", tag="button").click()
        await wait_for(desktop, lambda d: "Task created" in body_text(d))
        no_violations(desktop)
        cookies = {c["name"]: c["value"] for c in desktop.get_cookies()}
        form = aiohttp.FormData(
            [(name, value) for name, value in sent if name != "action"] + [("action", "submit")]
        )
        async with http.post(
            f"{intake}/console/tasks/new", data=form, cookies=cookies, headers={"Accept-Language": "en"}
        ) as again:
            replayed = await again.text()
            assert again.status == 200, replayed
        assert "This form was sent already" in replayed
        by_text(desktop, "Open the task", tag="a").click()
        await wait_for(desktop, lambda d: "/console/tasks/" in d.current_url and "Timeline" in body_text(d))
        task_id = desktop.current_url.rsplit("/", 1)[-1].split("?")[0]
        assert task_id in replayed, "the second sending answers with the same task"
        status, page = await api.call("GET", f"{intake}/v1/tasks?limit=10")
        assert status == 200 and [t["id"] for t in page["items"]] == [task_id]
        task = (await api.call("GET", f"{intake}/v1/tasks/{task_id}"))[1]
        leg_id = task["legs"][0]["id"]
        assert task["legs"][0]["dropoff"]["recipient_name"] == "Wang Fang"

        # A volunteer takes it and delivers it with a photo; the page follows without a reload.
        desktop.execute_script("window.__samePage = true;")
        offer = await api.offer_of(lin, leg_id)
        await api.me("POST", f"offers/{offer['id']}/accept", lin)
        await wait_for(
            desktop, lambda d: "Lin Hui" in leg_card_text(d, 1) and "Assigned" in leg_card_text(d, 1)
        )
        await api.me("POST", f"legs/{leg_id}/picked-up", lin)
        await wait_for(desktop, lambda d: "Picked up" in leg_card_text(d, 1))
        status, photo = await api.call(
            "POST",
            f"{api.dispatcher}/v1/me/legs/{leg_id}/photos",
            lin,
            data=photo_samples.png(640, 480),
            headers={"Content-Type": "image/png"},
        )
        assert status == 201, photo
        await api.me("POST", f"legs/{leg_id}/delivered", lin, json={"photo_id": photo["id"]})
        await wait_for(desktop, lambda d: d.find_elements(By.CSS_SELECTOR, "#leg-1 figure.photo img"))
        await wait_for(
            desktop,
            lambda d: d.execute_script(
                "const i = document.querySelector('#leg-1 figure.photo img');"
                " return i.complete && i.naturalWidth > 0;"
            ),
        )
        assert desktop.execute_script("return window.__samePage === true;"), "no reload: it came by polling"
        events = timeline_text(desktop)
        assert "Task submitted" in events and coordinator.email in events
        assert "Picked up" in events and "volunteer Lin Hui" in events
        assert "Delivered" in events
        no_violations(desktop)
        screenshot(desktop, "task-desktop")

        # A task nobody near can take: the coordinator gives it by hand to a volunteer without insurance,
        # first refused and told why, then with a reason to override.
        far = somewhere()
        second = await api.created(
            f"{intake}/v1/tasks",
            {
                "kind": "errand",
                "pickup": {"lat": far[0], "lon": far[1], "address": "Market"},
                "dropoffs": [
                    {
                        "lat": far[0] + 0.003,
                        "lon": far[1],
                        "address": "12 River Street",
                        "recipient_name": "Zhao Lei",
                    }
                ],
            },
        )
        second_leg = second["legs"][0]["id"]
        zhou_id, zhou = await api.volunteer("Zhou Min", far, insured=False)
        desktop.get(f"{intake}/console/tasks/{second['id']}")
        await wait_for(desktop, lambda d: "Assign drop-off 1 by hand" in body_text(d))
        choose(desktop, "Volunteer", value=zhou_id)
        by_text(desktop, "Assign drop-off 1", tag="button").click()
        await wait_for(desktop, lambda d: d.find_elements(By.CSS_SELECTOR, "form .problem"))
        assert "insurance is not in force" in desktop.find_element(By.ID, "assign-volunteer-1-error").text
        no_violations(desktop)
        choose(desktop, "Volunteer", value=zhou_id)
        by_label(desktop, "Reason to override a limit").send_keys(
            "Insurance renewed this morning, paper copy seen"
        )
        by_text(desktop, "Assign drop-off 1", tag="button").click()
        await wait_for(desktop, lambda d: "Assigned; the volunteer is told." in body_text(d))
        await wait_for(desktop, lambda d: "Zhou Min" in leg_card_text(d, 1))
        await wait_for(
            desktop,
            lambda d: "Assigned by hand" in timeline_text(d) and coordinator.email in timeline_text(d),
        )

        # Picked up, then handed back: it waits for a decision, shown on every page as an escalation.
        await api.me("POST", f"legs/{second_leg}/picked-up", zhou)
        await api.me("POST", f"legs/{second_leg}/problem", zhou, json={"reason": "flat tyre"})
        desktop.get(f"{intake}/console/tasks")
        await wait_for(desktop, lambda d: d.title.startswith("(1)"))
        escalations = desktop.find_element(By.ID, "escalations")
        assert "Escalations needing you: 1" in escalations.text
        escalations.find_element(By.TAG_NAME, "summary").click()
        escalations.find_element(By.PARTIAL_LINK_TEXT, "needs a decision").click()
        await wait_for(desktop, lambda d: "Decide about drop-off 1" in body_text(d))
        assert second["id"] in desktop.current_url
        no_violations(desktop)
        tick(desktop, "Decision", "Return to the pickup")
        by_label(desktop, "Note").send_keys("Bring it back to the market")
        by_text(desktop, "Decide drop-off 1", tag="button").click()
        await wait_for(desktop, lambda d: "Your decision is recorded." in body_text(d))
        await wait_for(desktop, lambda d: "Needs a decision" not in leg_card_text(d, 1))
        await wait_for(desktop, lambda d: not d.title.startswith("("))


async def test_another_organisations_coordinator_sees_none_of_its_tasks(
    stack: Stack, system: ServiceProcesses, intake: str, desktop: Any
) -> None:
    first = await new_coordinator(stack, intake)
    other = await new_coordinator(stack, intake)
    here = somewhere()
    async with aiohttp.ClientSession() as http:
        api = Api(http, system, first.operator_token)
        task = await api.created(
            f"{intake}/v1/tasks",
            {
                "kind": "errand",
                "external_ref": "ORG-A-ONLY",
                "pickup": {"lat": here[0], "lon": here[1], "address": "A depot"},
                "dropoffs": [{"lat": here[0], "lon": here[1] + 0.002, "address": "A door"}],
            },
        )
    await log_in(desktop, intake, other, email_label="E-mail", password_label="Password", submit="Log in")
    desktop.get(f"{intake}/console/tasks/{task['id']}")
    await wait_for(desktop, lambda d: "Not found" in body_text(d))
    assert "A depot" not in body_text(desktop)
    desktop.get(f"{intake}/console/tasks?q=ORG-A-ONLY")
    await wait_for(desktop, lambda d: "No tasks match." in body_text(d))
    desktop.get(f"{intake}/console/tasks")
    await wait_for(desktop, lambda d: "No tasks match." in body_text(d))


async def test_every_console_screen_in_chinese_on_a_phone_reads_well_to_a_screen_reader(
    stack: Stack, system: ServiceProcesses, intake: str, phone: Any
) -> None:
    """Set a password from the one-time link, then each screen in Chinese: no axe violation."""
    from selenium.webdriver.common.by import By

    settings = stack.settings()
    organisation = await admin.new_organisation(settings, f"Console org {uuid.uuid4().hex[:8]}")
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.org"
    person = await admin.new_person(settings, uuid.UUID(organisation["id"]), email=email, role="operator")
    coordinator = Coordinator(email, organisation["id"], organisation["operator_token"])

    phone.get(f"{intake}/password-setup#token={person['setup']['token']}")
    await wait_for(phone, lambda d: by_label(d, "一次性链接代码").get_attribute("value"))
    assert "token=" not in phone.current_url, "the token leaves the address bar"
    no_violations(phone)
    screenshot(phone, "password-setup-phone")
    by_label(phone, "新密码").send_keys("short")
    by_text(phone, "保存密码", tag="button").click()
    await wait_for(phone, lambda d: d.find_elements(By.CSS_SELECTOR, ".field-error"))
    no_violations(phone)
    by_label(phone, "新密码").send_keys(PASSWORD)
    by_text(phone, "保存密码", tag="button").click()
    await wait_for(phone, lambda d: "密码已保存" in body_text(d))
    no_violations(phone)

    await log_in(phone, intake, coordinator, email_label="电子邮箱", password_label="密码", submit="登录")
    here = somewhere()
    async with aiohttp.ClientSession() as http:
        api = Api(http, system, coordinator.operator_token)
        task = await api.created(
            f"{intake}/v1/tasks",
            {
                "kind": "supply_run",
                "priority": "critical",
                "external_ref": "NB-0042",
                "pickup": {"lat": here[0], "lon": here[1], "address": "仓库"},
                "dropoffs": [{"lat": here[0], "lon": here[1] + 0.002, "address": "幸福小区 3 号楼"}],
            },
        )
        in_haishu = await api.created(
            f"{intake}/v1/tasks",
            {
                "kind": "meal",
                "external_ref": "NB-0043",
                "deliver_by": "2100-06-01T04:00:00Z",
                "pickup": {"lat": 29.871, "lon": 121.551, "address": "天一广场"},
                "dropoffs": [{"lat": 29.875, "lon": 121.545, "address": "药行街 5 号"}],
            },
        )
    # The district of the pickup, chosen in the filters; then a time window around the deadline.
    phone.get(f"{intake}/console/tasks")
    by_text(phone, "筛选任务", tag="summary").click()
    choose(phone, "区县（取货点）", text="海曙区")
    by_text(phone, "筛选", tag="button").click()
    await wait_for(phone, lambda d: "district=Haishu" in d.current_url and "送餐 · NB-0043" in body_text(d))
    assert "NB-0042" not in body_text(phone)
    no_violations(phone)
    phone.get(f"{intake}/console/tasks?since=2100-06-01T11:00&until=2100-06-01T13:00")
    await wait_for(phone, lambda d: "送餐 · NB-0043" in body_text(d))
    assert "NB-0042" not in body_text(phone) and in_haishu["id"]
    phone.get(f"{intake}/console/tasks?since=2100-06-01T13:00")
    await wait_for(phone, lambda d: "没有符合条件的任务。" in body_text(d))

    phone.get(f"{intake}/console/tasks?q=NB-0042")
    await wait_for(phone, lambda d: "物资配送 · NB-0042" in body_text(d))
    assert "特急" in body_text(phone)
    no_violations(phone)
    phone.get(f"{intake}/console/tasks")
    await wait_for(phone, lambda d: "物资配送 · NB-0042" in body_text(d))
    no_violations(phone)
    screenshot(phone, "tasks-phone")

    by_text(phone, "物资配送 · NB-0042", tag="a").click()
    await wait_for(phone, lambda d: "时间线" in body_text(d))
    assert task["id"] in phone.current_url
    no_violations(phone)
    screenshot(phone, "task-phone")

    phone.get(f"{intake}/console/tasks/new")
    await wait_for(phone, lambda d: by_label(d, "类型"))
    tick(phone, "取货地点来自", "坐标")
    by_label(phone, "纬度").send_keys("九十")
    tick(phone, "送达点来自", "手动填写")
    by_text(phone, "创建任务", tag="button").click()
    await wait_for(phone, lambda d: "请修改下面标出的内容" in body_text(d))
    assert "请输入数字。" in phone.find_element(By.ID, "pickup_lat-error").text
    no_violations(phone)
    screenshot(phone, "new-task-phone")

    phone.get(f"{intake}/console/tasks/{uuid.uuid4()}")
    await wait_for(phone, lambda d: "未找到" in body_text(d))
    no_violations(phone)
