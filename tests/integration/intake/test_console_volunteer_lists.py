"""The console's lists of volunteers hold the whole organisation, however many pages the dispatcher
answers with: a coordinator can hand a leg to any of them from the task's page."""

from __future__ import annotations

import asyncio
import html
import uuid

import aiohttp

from errands import admin
from errands.launcher import ServiceProcesses
from tests.conftest import Stack
from tests.integration.intake.conftest import task_body

PASSWORD = "a long enough password"
MORE_THAN_A_PAGE = 201  # the console asks for 200 a page


async def test_a_task_page_offers_every_volunteer_of_the_organisation(
    stack: Stack, system: ServiceProcesses, http: aiohttp.ClientSession
) -> None:
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    settings = stack.settings()
    organisation = await admin.new_organisation(settings, f"Big org {uuid.uuid4().hex[:8]}")
    bearer = {"Authorization": f"Bearer {organisation['operator_token']}"}
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.org"
    person = await admin.new_person(settings, uuid.UUID(organisation["id"]), email=email, role="operator")
    setup = {"token": person["setup"]["token"], "password": PASSWORD}
    async with http.post(f"{intake}/v1/password-setup", json=setup) as response:
        assert response.status == 204, await response.text()
    async with http.post(f"{intake}/v1/sessions", json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 201, await response.text()
        cookie = response.cookies["errands_session"].value

    names = [f"Helper {n:03d}" for n in range(MORE_THAN_A_PAGE)]
    gate = asyncio.Semaphore(8)

    async def register(name: str) -> None:
        async with (
            gate,
            http.post(
                f"{dispatcher}/v1/volunteers", json={"name": name, "vehicle": "bicycle"}, headers=bearer
            ) as response,
        ):
            assert response.status == 201, await response.text()

    await asyncio.gather(*(register(name) for name in names))
    headers = {**bearer, "Idempotency-Key": str(uuid.uuid4())}
    async with http.post(f"{intake}/v1/tasks", json=task_body(), headers=headers) as response:
        assert response.status == 201, await response.text()
        task_id = (await response.json())["id"]

    async with http.get(
        f"{intake}/console/tasks/{task_id}",
        headers={"Cookie": f"errands_session={cookie}", "Accept-Language": "en"},
    ) as response:
        page = html.unescape(await response.text())
        assert response.status == 200, page
    missing = [name for name in names if name not in page]
    assert missing == []
