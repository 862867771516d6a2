"""`make run`'s demo coordinator: one login, made once, that keeps working from start to start."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from errands import admin
from errands.launcher import ServiceProcesses
from tests.conftest import Stack


async def _log_in(intake: str, email: str, password: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{intake}/v1/sessions", json={"email": email, "password": password}) as r,
    ):
        body: dict[str, Any] = await r.json(content_type=None)
        return r.status, body


async def test_the_kept_password_is_the_coordinators_again_after_it_was_changed(
    stack: Stack, system: ServiceProcesses
) -> None:
    settings, intake = stack.settings(), system.url("intake")
    demo = await admin.bootstrap_demo(settings)
    organisation = uuid.UUID(demo["organisation_id"])
    saved = {"console_email": f"coordinator-{uuid.uuid4().hex[:8]}@ningbo-demo.example"}
    first = await admin.demo_coordinator(settings, organisation, saved)
    assert len(first["console_password"]) >= 12
    status, body = await _log_in(intake, first["console_email"], first["console_password"])
    assert status == 201, body
    assert body["person"]["role"] == "operator" and body["person"]["organisation_id"] == str(organisation)

    # The coordinator sets a password of their own; the next start sets the kept one again.
    link = await admin.new_password_link(settings, uuid.UUID(first["coordinator_id"]))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{intake}/v1/password-setup",
            json={"token": link["setup"]["token"], "password": "another password of mine"},
        ) as r,
    ):
        assert r.status == 204, await r.text()
    assert (await _log_in(intake, first["console_email"], first["console_password"]))[0] == 401
    again = await admin.demo_coordinator(settings, organisation, first)
    assert again == first, "the same person and login"
    assert (await _log_in(intake, first["console_email"], first["console_password"]))[0] == 201


async def test_an_address_of_another_organisation_is_left_alone(
    stack: Stack, system: ServiceProcesses
) -> None:
    settings, intake = stack.settings(), system.url("intake")
    earlier = await admin.bootstrap_demo(settings)
    kept = await admin.demo_coordinator(
        settings,
        uuid.UUID(earlier["organisation_id"]),
        {"console_email": f"coordinator-{uuid.uuid4().hex[:8]}@ningbo-demo.example"},
    )
    # The demo organisation was made again (its tokens revoked, say) on the same database.
    now = await admin.bootstrap_demo(settings)
    made = await admin.demo_coordinator(settings, uuid.UUID(now["organisation_id"]), kept)
    assert made["console_email"] != kept["console_email"]
    assert made["console_password"] == kept["console_password"]
    status, body = await _log_in(intake, made["console_email"], made["console_password"])
    assert status == 201 and body["person"]["organisation_id"] == now["organisation_id"]
    status, body = await _log_in(intake, kept["console_email"], kept["console_password"])
    assert status == 201 and body["person"]["organisation_id"] == earlier["organisation_id"]
