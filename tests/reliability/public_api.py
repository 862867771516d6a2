"""Organisations, volunteers, tasks and offers made over the services' public HTTP APIs, as a client would.

The reliability modules that drive the session's running system set up their worlds from these.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from tests.client import bearer, until

# A web address nothing listens on: deliveries to it fail and stay retryable.
DEAD_HOOK_URL = "http://127.0.0.1:9/hook"


async def expect(response: aiohttp.ClientResponse, status: int) -> Any:
    """The JSON body of `response`, which must have answered `status`."""
    assert response.status == status, (
        f"{response.method} {response.url}: {response.status} {await response.text()}"
    )
    return await response.json()


async def new_organisation(http: aiohttp.ClientSession, intake: str, *, admin_token: str, name: str) -> Any:
    """A new organisation, with its first operator's token (`operator_token`)."""
    async with http.post(f"{intake}/v1/organisations", json={"name": name}, headers=bearer(admin_token)) as r:
        return await expect(r, 201)


async def new_volunteer(
    http: aiohttp.ClientSession, dispatcher: str, *, operator: Mapping[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """A volunteer registered by `operator` (headers), with its token."""
    async with http.post(f"{dispatcher}/v1/volunteers", json=body, headers=operator) as r:
        created: dict[str, Any] = await expect(r, 201)
    return created


async def go_on_duty(
    http: aiohttp.ClientSession,
    dispatcher: str,
    *,
    me: Mapping[str, str],
    at: tuple[float, float] | None = None,
) -> None:
    """The volunteer (`me`, headers) on duty, and reporting where it stands if `at` is given."""
    async with http.put(f"{dispatcher}/v1/me/duty", json={"on_duty": True}, headers=me) as r:
        await expect(r, 200)
    if at is not None:
        location = {"lat": at[0], "lon": at[1], "accuracy_m": 5}
        async with http.post(f"{dispatcher}/v1/me/location", json=location, headers=me) as r:
            assert r.status == 202, await r.text()


async def submit_task(
    http: aiohttp.ClientSession, intake: str, *, operator: Mapping[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """A task submitted by `operator` (headers), as intake acknowledged it."""
    headers = {**operator, "Idempotency-Key": str(uuid.uuid4())}
    async with http.post(f"{intake}/v1/tasks", json=body, headers=headers) as r:
        task: dict[str, Any] = await expect(r, 201)
    return task


async def first_offer(
    http: aiohttp.ClientSession,
    dispatcher: str,
    *,
    me: Mapping[str, str],
    timeout_s: float,
    every_s: float = 0.2,
) -> dict[str, Any]:
    """The first offer the volunteer (`me`, headers) sees, once there is one."""

    async def offer() -> dict[str, Any] | None:
        async with http.get(f"{dispatcher}/v1/me/assignments", headers=me) as r:
            offers: list[dict[str, Any]] = (await expect(r, 200))["offers"]
        return offers[0] if offers else None

    return await until(offer, what="an offer to the volunteer", timeout_s=timeout_s, every_s=every_s)
