"""Pages in a real headless Chromium, as a person uses them: by visible labels, at phone size.

Debian's `chromium` and `chromedriver` are given explicitly and Selenium Manager is forbidden, so no
test ever downloads a browser. `axe_violations` runs the vendored axe-core on the page as it stands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.web.static import VENDOR_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHONE = (390, 844)
DESKTOP = (1440, 1100)
# Chromium's language flag for each of the pages' languages.
LOCALES = {"zh": "zh-CN", "en": "en-GB", "ko": "ko-KR", "ja": "ja-JP"}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium chromium-driver)",
)


@contextmanager
def chromium(
    profile: Path, *, size: tuple[int, int] = PHONE, language: str = "zh", mobile: bool | None = None
) -> Iterator[Any]:
    """A headless Chromium with its own profile, window `size` and browser language.

    At phone size it also reports itself as a touch device with a phone's user agent, as a cheap
    Android phone would.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common import selenium_manager

    def no_downloads(*_: Any, **__: Any) -> Any:
        raise AssertionError("Selenium Manager must not run: the browser and driver are given explicitly")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        patch.setattr(selenium_manager.SeleniumManager, "binary_paths", no_downloads)
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--lang={LOCALES[language]}",
        ):
            options.add_argument(argument)
        options.add_experimental_option("prefs", {"intl.accept_languages": LOCALES[language]})
        if mobile if mobile is not None else size == PHONE:
            options.add_experimental_option(
                "mobileEmulation",
                {
                    "deviceMetrics": {"width": size[0], "height": size[1], "pixelRatio": 2.0, "touch": True},
                    "userAgent": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 "
                    "(KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
                },
            )
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


async def wait_for(driver: Any, condition: Callable[[Any], Any], *, timeout_s: float = 60.0) -> Any:
    """Wait, off the event loop, until `condition(driver)` is truthy.

    A poll that catches the page mid-change (an element redrawn, or a form's answer replacing the
    document: "node does not belong to the document") is tried again on the next poll; if the
    condition never holds, the timeout carries the last such error's stack trace.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout_s, poll_frequency=0.2, ignored_exceptions=(WebDriverException,))
    return await asyncio.to_thread(wait.until, condition)


def by_label(driver: Any, label: str) -> Any:
    """The form control whose visible label (or aria-label) is exactly `label`."""
    literal = json.dumps(label)
    found = driver.execute_script(
        f"""
        const want = {literal};
        const clean = (s) => (s || "").replace(/\\s+/g, " ").trim();
        for (const label of document.querySelectorAll("label")) {{
          const own = clean(label.firstChild && label.firstChild.textContent);
          if ((clean(label.textContent) === want || own === want) && label.control) return label.control;
        }}
        for (const el of document.querySelectorAll("[aria-label]")) {{
          if (clean(el.getAttribute("aria-label")) === want) return el;
        }}
        return null;
        """
    )
    if found is None:
        raise AssertionError(f"no control labelled {label!r}")
    return found


def by_text(driver: Any, text: str, tag: str = "*") -> Any:
    """The visible element (a button or a link, usually) whose own text is exactly `text`."""
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.XPATH, f"//{tag}[normalize-space()={xpath_literal(text)}]"):
        if element.is_displayed():
            return element
    raise AssertionError(f"nothing visible reads {text!r}")


def xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in parts) + ")"


def axe_violations(
    driver: Any, *, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[dict[str, Any]]:
    """axe-core's violations of the given impacts on the page as it stands (none is the goal)."""
    source = (VENDOR_DIR / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
    driver.execute_script(source)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then((r) => done(r.violations),"
        " (e) => done([{id: 'axe-error', impact: 'critical', description: String(e), nodes: []}]));"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "description": v["description"],
            "nodes": [node.get("target") for node in v.get("nodes", [])][:5],
        }
        for v in result
        if v.get("impact") in impacts
    ]
