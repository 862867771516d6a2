"""The operator console in a real headless Chromium against the real stack, used as a coordinator would:
by visible labels and texts, in Chinese (the default) and English."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
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
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


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
    assert axe_violations(driver) == []


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
    stack: Stack, intake: str, desktop: Any
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
