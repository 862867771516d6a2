"""`make run`'s demo people, and the pages it points them at.

A coordinator of the demo organisation logs in to the operator console (`<intake>/console`); a demo
volunteer of the same organisation is enrolled on a phone from a one-time link to the volunteer app
(`<dispatcher>/app`), made afresh on every start. The simulated day plays in that organisation too
(its operator token), so what it does moves on the coordinator's board.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from errands import admin
from errands.simulation.agents import ApiError, call
from shared.settings import Settings

APP_PATH = "/app"
CONSOLE_PATH = "/console"
PASSWORD_SETUP_PATH = "/password-setup"  # noqa: S105 (a page, not a secret)
# The demo volunteer: insured, on an e-bike, at home in Ningbo's Haishu district, speaks zh and en.
DEMO_VOLUNTEER = {
    "name": "演示志愿者 Demo volunteer",
    "languages": ["zh", "en"],
    "vehicle": "ebike",
    "capacity_kg": 10.0,
    "insured": True,
    "max_active_legs": 1,
    "home": {"lat": 29.8683, "lon": 121.5440},
}


def reachable_url(host: str, port: int) -> str:
    """The address people open a page of a service bound to `host` at.

    A service bound to every interface (`0.0.0.0`, `::`) is reached at this machine's address on the
    local network, so a phone on the same network can open it; one bound to an address, at that.
    """
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (reading the setting, not binding)
        host = _network_address()
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"http://{host}:{port}"


def _network_address() -> str:
    """This machine's address on its way out (a datagram socket's connect sends nothing), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
            address: str = probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return address


def page_settings(*, intake_url: str, dispatcher_url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Where the services' one-time links point when `make run` starts them, unless `environ` says.

    An enrolment link opens the volunteer app, a set-password link the console's page for it;
    the URLs are those people reach the services at (`reachable_url`).
    """
    defaults = {
        "ENROLMENT_URL": dispatcher_url + APP_PATH,
        "PASSWORD_SETUP_URL": intake_url + PASSWORD_SETUP_PATH,
    }
    return {name: environ.get(name) or value for name, value in defaults.items()}


async def prepare(
    settings: Settings, *, dispatcher_url: str, console_url: str, saved: Mapping[str, Any] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """The demo's lasting state (kept for the next start) and what this start shows.

    Kept: the organisation and its tokens, the coordinator's login, the demo volunteer's id. Shown:
    the app's address (`settings.enrolment_url`, where the dispatcher's links point) and the
    console's, a new one-time enrolment link, and the coordinator's login. `dispatcher_url` is
    where this machine calls the dispatcher's API.
    """
    saved = saved or {}
    tokens = await admin.demo_tokens(settings, saved)
    # Kept people of another (earlier) demo organisation are not reused; its password is.
    coordinator = await admin.demo_coordinator(settings, uuid.UUID(tokens["organisation_id"]), saved)
    async with aiohttp.ClientSession() as http:
        volunteer_id = await _demo_volunteer(
            http, dispatcher_url, tokens["operator_token"], saved.get("demo_volunteer_id")
        )
        answer = await call(
            http,
            "POST",
            f"{dispatcher_url}/v1/volunteers/{volunteer_id}/enrolment",
            token=tokens["operator_token"],
        )
        if answer.status != 201:
            raise ApiError(f"an enrolment link for the demo volunteer: {answer.status} {answer.body}")
    kept = {**tokens, **coordinator, "demo_volunteer_id": volunteer_id}
    shown = {
        "app_url": settings.enrolment_url,
        "app_enrol_url": str(answer.body["link"]),
        "console_url": console_url,
        "console_email": coordinator["console_email"],
        "console_password": coordinator["console_password"],
    }
    return kept, shown


async def _demo_volunteer(
    http: aiohttp.ClientSession, dispatcher_url: str, operator_token: str, saved_id: Any
) -> str:
    """The demo volunteer of an earlier start if still active, else a new one with no device yet.

    One of an earlier demo organisation answers 404 to this organisation's token, so is not reused.
    """
    if isinstance(saved_id, str):
        try:
            uuid.UUID(saved_id)
        except ValueError:
            saved_id = None
        else:
            found = await call(
                http, "GET", f"{dispatcher_url}/v1/volunteers/{saved_id}", token=operator_token
            )
            if found.status == 200 and found.body.get("deactivated_at") is None:
                return saved_id
    made = await call(
        http, "POST", f"{dispatcher_url}/v1/volunteers", token=operator_token, json=DEMO_VOLUNTEER
    )
    if made.status != 201:
        raise ApiError(f"registering the demo volunteer: {made.status} {made.body}")
    volunteer_id = str(made.body["id"])
    # Registration hands out a device token; nobody holds it, so it goes: the phone enrols by link.
    revoked = await call(
        http,
        "DELETE",
        f"{dispatcher_url}/v1/volunteers/{volunteer_id}/tokens/{made.body['token_id']}",
        token=operator_token,
    )
    if revoked.status != 204:
        raise ApiError(f"revoking the demo volunteer's first token: {revoked.status} {revoked.body}")
    return volunteer_id
