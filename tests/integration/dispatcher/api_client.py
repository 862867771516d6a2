"""An operator's and volunteers' view of the running system, shared by the dispatcher's HTTP tests."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import LegRow
from tests.client import bearer


class Client:
    """An aiohttp session with the operator helpers these tests share."""

    def __init__(self, http: aiohttp.ClientSession, system: ServiceProcesses, admin_token: str) -> None:
        self.http = http
        self.intake = system.url("intake")
        self.dispatcher = system.url("dispatcher")
        self.admin_token = admin_token

    async def call(self, method: str, url: str, token: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(
            method, url, headers={**bearer(token), **kwargs.pop("headers", {})}, **kwargs
        ) as r:
            body = await r.json() if r.content_type.endswith("json") else None
            return r.status, body

    async def organisation(self) -> str:
        status, body = await self.call(
            "POST", f"{self.intake}/v1/organisations", self.admin_token, json={"name": f"org {uuid.uuid4()}"}
        )
        assert status == 201
        return str(body["operator_token"])

    async def volunteer(self, operator: str, place: tuple[float, float], **fields: Any) -> tuple[str, str]:
        body = {
            "name": "Li Lei",
            "vehicle": "bicycle",
            "capacity_kg": 20,
            "insured": True,
            "languages": ["zh"],
            **fields,
        }
        status, created = await self.call("POST", f"{self.dispatcher}/v1/volunteers", operator, json=body)
        assert status == 201, created
        token = created["token"]
        assert (await self.call("PUT", f"{self.dispatcher}/v1/me/duty", token, json={"on_duty": True}))[
            0
        ] == 200
        lat, lon = place
        assert (
            await self.call("POST", f"{self.dispatcher}/v1/me/location", token, json={"lat": lat, "lon": lon})
        )[0] == 202
        return str(created["id"]), str(token)

    async def task(
        self, operator: str, place: tuple[float, float], *, dropoffs: int = 1, kind: str = "errand"
    ) -> dict[str, Any]:
        lat, lon = place
        body = {
            "kind": kind,
            "pickup": {"lat": lat, "lon": lon, "address": "depot"},
            "dropoffs": [
                {"lat": lat + 0.005, "lon": lon + 0.005, "address": f"door {i}"} for i in range(dropoffs)
            ],
            "items": [{"name": "rice", "quantity": 1, "weight_kg": 1.0}],
        }
        status, task = await self.call(
            "POST",
            f"{self.intake}/v1/tasks",
            operator,
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert status == 201, task
        return dict(task)

    async def poll(
        self, token: str, *, etag: str | None = None, wait: int = 0, base: str | None = None
    ) -> tuple[int, dict[str, Any], str]:
        headers = {**bearer(token), **({"If-None-Match": etag} if etag else {})}
        async with self.http.get(
            f"{base or self.dispatcher}/v1/me/assignments?wait={wait}", headers=headers
        ) as r:
            body = await r.json() if r.status == 200 else {}
            return r.status, body, r.headers.get("ETag", "")

    async def until_offered(self, token: str, leg_id: str) -> dict[str, Any]:
        etag = None
        while True:
            status, body, etag = await self.poll(token, etag=etag, wait=20)
            assert status in (200, 304)
            for offer in body.get("offers", []):
                if offer["leg"]["id"] == leg_id:
                    return dict(offer)


async def leg_arrives(sessionmaker: async_sessionmaker[AsyncSession], leg_id: str) -> None:
    """Wait until the dispatcher has taken the leg in from Kafka."""
    for _ in range(600):
        async with sessionmaker() as session:
            if await session.get(LegRow, uuid.UUID(leg_id)) is not None:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"leg {leg_id} never reached the dispatcher")


def somewhere() -> tuple[float, float]:
    """A place of this test's own, far from every other test's volunteers."""
    return random.uniform(-45, 45), random.uniform(-170, 170)
