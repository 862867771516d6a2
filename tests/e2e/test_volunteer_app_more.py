"""More of the volunteer app in headless Chromium on the real stack: fixes over the location
WebSocket (not HTTP), the server's refusals in words, an offline action refused on replay, Decline,
and "Report a problem".
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from shared.db import create_engine, create_sessionmaker
from tests.client import bearer, until
from tests.conftest import Stack
from tests.e2e.test_volunteer_app import (
    COUNT_OUTBOX,
    Centre,
    accept_offer_for,
    browser,
    button_in,
    card,
    centre,
    enrol_and_go_on_duty,
    labelled,
    place_phone,
    shows,
    sync_badge,
)
from tests.integration.dispatcher.test_volunteer_retries import _leg_events
from tests.pages import axe_violations, by_label, by_text, needs_chromium, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]
__all__ = ["browser", "centre"]  # fixtures, shared with the first file


async def requests_served(http: aiohttp.ClientSession, dispatcher: str, route: str, method: str) -> float:
    """How many requests the dispatcher served on `route` so far, by its Prometheus counter."""
    async with http.get(f"{dispatcher}/metrics") as response:
        assert response.status == 200
        exported = await response.text()
    pattern = re.compile(r"^errands_http_requests_total\{([^}]*)\} ([0-9.e+]+)$", re.MULTILINE)
    total = 0.0
    for labels, value in pattern.findall(exported):
        if f'route="{route}"' in labels and f'method="{method}"' in labels:
            total += float(value)
    return total


async def location_of(centre: Centre, volunteer_id: str) -> tuple[float, float] | None:
    async with centre.http.get(
        f"{centre.dispatcher}/v1/volunteers/{volunteer_id}", headers=bearer(centre.operator)
    ) as response:
        assert response.status == 200, await response.text()
        location = (await response.json())["location"]
    return (location["lat"], location["lon"]) if location and location["lat"] is not None else None


async def test_fixes_reach_the_server_over_the_websocket_not_http(centre: Centre, browser: Any) -> None:
    place = (69.6492, 18.9553)
    posted = await requests_served(centre.http, centre.dispatcher, "/v1/me/location", "POST")
    streams = await requests_served(centre.http, centre.dispatcher, "/v1/me/location/stream", "GET")
    volunteer_id = await enrol_and_go_on_duty(browser, centre, "Siri Example", place)
    # The phone moves 1 km: a fix past the 100 m threshold goes at once.
    moved = (place[0] + 0.009, place[1])
    place_phone(browser, centre.dispatcher, *moved)

    async def arrived() -> bool:
        where = await location_of(centre, volunteer_id)
        return where is not None and abs(where[0] - moved[0]) < 1e-6

    await until(arrived, what="the moved phone's fix reached the server", timeout_s=30)
    assert await requests_served(centre.http, centre.dispatcher, "/v1/me/location", "POST") == posted, (
        "no fix went by HTTP"
    )
    # The stream is counted once it ends: going off duty closes it.
    by_text(browser, "Go off duty", tag="button").click()
    await wait_for(browser, shows("Go on duty"))

    async def stream_counted() -> bool:
        served = await requests_served(centre.http, centre.dispatcher, "/v1/me/location/stream", "GET")
        return served > streams

    await until(stream_counted, what="the location stream was used", timeout_s=15)
    assert await requests_served(centre.http, centre.dispatcher, "/v1/me/location", "POST") == posted
    assert axe_violations(browser) == []


async def test_the_sms_switch_keeps_the_preference_on_the_server(centre: Centre, browser: Any) -> None:
    place = (70.0733, 29.7497)
    volunteer_id = await centre.volunteer("Unni Example")
    link = await centre.enrolment_link(volunteer_id)
    place_phone(browser, centre.dispatcher, *place)
    browser.get(link)
    switch = await wait_for(browser, labelled("Text me when a new offer waits"))
    assert switch.get_attribute("role") == "switch" and not switch.is_selected()
    token = browser.execute_script("return localStorage.getItem('errands.token')")

    async def preference() -> dict[str, Any]:
        async with centre.http.get(
            f"{centre.dispatcher}/v1/me/preferences", headers=bearer(token)
        ) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    switch.click()
    await until(
        lambda: _is(preference(), {"sms_on_offer": True, "sms_language": "en", "has_phone": True}),
        what="the preference on the server",
        timeout_s=15,
    )
    assert axe_violations(browser) == []
    by_label(browser, "Text me when a new offer waits").click()
    await until(
        lambda: _is(preference(), {"sms_on_offer": False, "sms_language": "en", "has_phone": True}),
        what="the preference off again",
        timeout_s=15,
    )


@pytest.mark.parametrize("back", ["online_while_open", "opened_again_online"])
async def test_signing_out_offline_revokes_the_token_once_the_phone_is_online_again(
    centre: Centre, browser: Any, back: str
) -> None:
    volunteer_id = await centre.volunteer("Vigdis Example")
    link = await centre.enrolment_link(volunteer_id)
    place_phone(browser, centre.dispatcher, 69.6492, 18.9553)
    browser.get(link)
    await wait_for(browser, shows("Go on duty"))
    token = browser.execute_script("return localStorage.getItem('errands.token')")

    async def token_answers() -> int:
        async with centre.http.get(f"{centre.dispatcher}/v1/me", headers=bearer(token)) as response:
            return response.status

    browser.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    await wait_for(browser, shows("Offline", tag="p"))
    by_text(browser, "Sign out this device", tag="button").click()
    await wait_for(browser, labelled("Enrolment link"))
    assert browser.execute_script("return localStorage.getItem('errands.token')") is None
    assert await token_answers() == 200, "offline, the server has not heard of it yet"
    # The sign-out waits on the phone (not as a way back in: the token is gone from the app).
    assert browser.execute_script("return localStorage.getItem('errands.sign_out')") is not None
    if back == "online_while_open":
        browser.delete_network_conditions()
        browser.execute_script("window.dispatchEvent(new Event('online'));")
    else:
        # Closed while offline, opened again later with a network. (Chromium's offline emulation
        # does not reliably outlast a reload, so "opened again while still offline" is not shown here.)
        app = browser.current_url
        browser.get("about:blank")
        browser.delete_network_conditions()
        browser.get(app)
    await until(lambda: _is(token_answers(), 401), what="the token revoked", timeout_s=15)
    await wait_for(
        browser, lambda d: d.execute_script("return localStorage.getItem('errands.sign_out')") is None
    )
    await wait_for(browser, labelled("Enrolment link"))
    assert axe_violations(browser) == []


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def sql(stack: Stack, statement: str, **values: Any) -> Any:
    """The first value the statement returns (an UPDATE says RETURNING)."""
    engine = create_engine(stack.settings(), pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return (await session.execute(text(statement), values)).scalar()
    finally:
        await engine.dispose()


def notice(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    shown = driver.find_element(By.ID, "notice")
    return str(shown.text) if shown.is_displayed() else ""


async def test_refusals_decline_a_problem_report_and_an_action_refused_on_replay(
    stack: Stack, centre: Centre, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    place = (-54.8019, -68.3030)  # far from every other volunteer of the suite
    volunteer_id = await centre.volunteer("Tove Example")
    link = await centre.enrolment_link(volunteer_id)
    place_phone(browser, centre.dispatcher, *place)
    browser.get(link)
    await wait_for(browser, shows("Go on duty"))

    # Owed rest (a shift just ended): going on duty is refused, and the reason is said in words.
    await sql(
        stack,
        "UPDATE dispatch.volunteers SET rest_until = now() + interval '25 minutes'"
        " WHERE id = :id RETURNING id",
        id=uuid.UUID(volunteer_id),
    )
    by_text(browser, "Go on duty", tag="button").click()
    await wait_for(browser, lambda d: "You are owed rest first" in notice(d))
    assert by_text(browser, "Go on duty", tag="button").is_displayed(), "still off duty"
    assert axe_violations(browser) == []
    await sql(
        stack,
        "UPDATE dispatch.volunteers SET rest_until = NULL WHERE id = :id RETURNING id",
        id=uuid.UUID(volunteer_id),
    )
    by_text(browser, "Go on duty", tag="button").click()
    await wait_for(browser, shows("Go off duty"))
    await until(
        lambda: centre.located(volunteer_id), what="the phone's location reached the server", timeout_s=30
    )

    # Decline: the card goes, and the server has the offer declined.
    await centre.task(place, "Dana")
    offer_id = await wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "#offers li").get_attribute("data-offer-id")
    )
    button_in(card(browser, "offer", offer_id), "Decline").click()
    await wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-offer-id="{offer_id}"]'))

    async def declined() -> bool:
        status = await sql(stack, "SELECT status FROM dispatch.offers WHERE id = :id", id=uuid.UUID(offer_id))
        return bool(status == "declined")

    await until(declined, what="the offer declined on the server", timeout_s=20)

    # Report a problem, with a reason: it reaches the server, and the leg leaves the phone.
    second = await centre.task(place, "Erik", kind="errand")
    leg = await accept_offer_for(browser, second)
    by_text(card(browser, "leg", leg), "Report a problem", tag="summary").click()
    reason = card(browser, "leg", leg).find_element(By.XPATH, ".//label[normalize-space()='Reason']")
    Select(browser.find_element(By.ID, reason.get_attribute("for"))).select_by_visible_text(
        "Problem with my vehicle"
    )
    assert axe_violations(browser) == []
    button_in(card(browser, "leg", leg), "Send the report").click()
    await wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-leg-id="{leg}"]'))
    reported = await _leg_events(stack.kafka_bootstrap, leg, ("leg.problem_reported",))
    assert reported["leg.problem_reported"]["reason"] == "vehicle_problem"

    # Offline, "Picked up"; meanwhile the centre releases the leg (the volunteer fell ill, say).
    # Back online, the replay is refused: shown in words, and dropped from the outbox.
    third = await centre.task(place, "Frida")
    browser.execute_script("window.scrollTo(0, 0);")  # the offers, above the header's reach
    leg = await accept_offer_for(browser, third)
    browser.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    await wait_for(browser, shows("Offline", tag="p"))
    button_in(card(browser, "leg", leg), "Picked up").click()
    await wait_for(browser, lambda d: "Waiting to sync" in card(d, "leg", leg).text)
    assert sync_badge(browser) == "Waiting to sync (1)", sync_badge(browser)
    async with centre.http.post(
        f"{centre.dispatcher}/v1/volunteers/{volunteer_id}/legs/release",
        json={"reason": "fell ill"},
        headers=bearer(centre.operator),
    ) as response:
        assert response.status == 200, await response.text()
    browser.delete_network_conditions()
    browser.execute_script("window.dispatchEvent(new Event('online'));")
    await wait_for(browser, lambda d: "Not accepted by the server: picked up." in notice(d), timeout_s=30)
    await wait_for(browser, lambda d: sync_badge(d) == "")
    assert browser.execute_async_script(COUNT_OUTBOX) == 0, "the refused action is dropped"
    await wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-leg-id="{leg}"]'))
    assert await sql(stack, "SELECT status FROM dispatch.legs WHERE id = :id", id=uuid.UUID(leg)) == "pending"
    assert axe_violations(browser) == []
