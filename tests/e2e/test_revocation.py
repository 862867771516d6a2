"""A revoked token stops working at once on every service, although each caches tokens it has seen."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests.client import bearer
from tests.conftest import Stack

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


# Open streams outlive the token check at their start: each ends when its token is revoked.


async def _token(
    http: aiohttp.ClientSession, url: str, admin_token: str, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(url, json=body, headers=bearer(admin_token)) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
    return created


async def _revoke(http: aiohttp.ClientSession, intake: str, admin_token: str, token_id: str) -> None:
    async with http.delete(f"{intake}/v1/tokens/{token_id}", headers=bearer(admin_token)) as response:
        assert response.status == 204


async def test_revoking_an_ops_token_ends_its_dashboard_stream(
    stack: Stack, system: ServiceProcesses
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    intake = system.url("intake")
    async with aiohttp.ClientSession() as http:
        ops = await _token(http, f"{intake}/v1/tokens", tokens["admin_token"], {"role": "ops"})
        async with http.get(f"{intake}/ops/stream", headers=bearer(ops["token"])) as stream:
            assert stream.status == 200
            async with asyncio.timeout(30):
                while await stream.content.readline() != b"\n":  # the first snapshot, whole
                    pass
            await _revoke(http, intake, tokens["admin_token"], ops["id"])
            # Snapshots come about once a second and keep-alives every 15 s: only an end ends this.
            async with asyncio.timeout(5):
                while await stream.content.readline():
                    pass
        async with http.get(f"{intake}/ops/stream", headers=bearer(ops["token"])) as again:
            assert again.status == 401


async def test_revoking_a_volunteers_token_answers_its_waiting_long_poll(
    stack: Stack, system: ServiceProcesses
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    async with aiohttp.ClientSession() as http:
        volunteer = await _token(
            http, f"{dispatcher}/v1/volunteers", tokens["operator_token"], {"name": "Wang Fang"}
        )
        me = bearer(volunteer["token"])
        async with http.get(f"{dispatcher}/v1/me/assignments", headers=me) as response:
            assert response.status == 200
            etag = response.headers["ETag"]

        async def poll() -> int:
            async with http.get(
                f"{dispatcher}/v1/me/assignments?wait=30", headers={**me, "If-None-Match": etag}
            ) as response:
                return response.status

        waiting = asyncio.create_task(poll())
        await asyncio.sleep(1.0)  # the poll is waiting by now
        assert not waiting.done()
        await _revoke(http, intake, tokens["admin_token"], volunteer["token_id"])
        async with asyncio.timeout(5):
            assert await waiting == 401


async def test_revoking_a_volunteers_token_closes_its_location_stream(
    stack: Stack, system: ServiceProcesses
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher = system.url("intake"), system.url("dispatcher")
    async with aiohttp.ClientSession() as http:
        volunteer = await _token(
            http, f"{dispatcher}/v1/volunteers", tokens["operator_token"], {"name": "Chen Jie"}
        )
        async with http.ws_connect(
            f"{dispatcher}/v1/me/location/stream", headers=bearer(volunteer["token"])
        ) as ws:
            await ws.send_json({"lat": -60.0, "lon": 10.0})
            assert (await ws.receive_json(timeout=10)) == {"accepted": 1}
            await _revoke(http, intake, tokens["admin_token"], volunteer["token_id"])
            async with asyncio.timeout(5):
                message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
