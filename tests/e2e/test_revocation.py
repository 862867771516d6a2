"""A revoked token stops working at once on every service, although each caches tokens it has seen."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests.conftest import Stack
from tests.e2e.test_walking_pipeline import bearer

pytestmark = pytest.mark.e2e


async def test_revoking_a_token_reaches_every_service_cache(stack: Stack, system: ServiceProcesses) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    reads = {
        "intake": f"{system.url('intake')}/v1/tasks?limit=1",
        "dispatcher": f"{system.url('dispatcher')}/v1/volunteers?limit=1",
        "notifier": f"{system.url('notifier')}/v1/webhooks",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{system.url('intake')}/v1/tokens", json={"role": "ops"}, headers=bearer(tokens["admin_token"])
        ) as response:
            assert response.status == 201
            ops = await response.json()
        for url in reads.values():  # every service now has the token in its cache
            async with http.get(url, headers=bearer(ops["token"])) as response:
                assert response.status == 200, (url, await response.text())
        async with http.delete(
            f"{system.url('intake')}/v1/tokens/{ops['id']}", headers=bearer(tokens["admin_token"])
        ) as response:
            assert response.status == 204
        for name, url in reads.items():
            status = 200
            for _ in range(50):  # the revocation travels by NOTIFY, well inside these 5 s
                async with http.get(url, headers=bearer(ops["token"])) as response:
                    status = response.status
                if status == 401:
                    break
                await asyncio.sleep(0.1)
            assert status == 401, f"{name} still accepts a revoked token"
