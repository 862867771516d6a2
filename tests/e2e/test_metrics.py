"""Every service exposes the Prometheus metrics an ops engineer alerts on."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests.client import bearer
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

COMMON = (
    "errands_http_requests_total",
    "errands_http_request_duration_seconds_bucket",
    "errands_outbox_backlog",
    "errands_outbox_oldest_age_seconds",
)


async def _metrics(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def test_services_export_requests_events_outbox_lag_and_dispatch_timings(
    stack: Stack, system: ServiceProcesses
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{system.url('intake')}/v1/tasks",
            json={
                "kind": "errand",
                "pickup": {"lat": 30.17, "lon": 121.27},
                "dropoffs": [{"lat": 30.18, "lon": 121.28}],
            },
            headers={**bearer(tokens["operator_token"]), "Idempotency-Key": str(uuid.uuid4())},
        ) as response:
            assert response.status == 201
        for _ in range(150):
            texts = {
                name: await _metrics(http, system.url(name)) for name in ("intake", "dispatcher", "notifier")
            }
            consumed = [
                'errands_events_consumed_total{event_type="task.submitted",group="dispatcher"',
                'errands_events_consumed_total{event_type="task.submitted",group="notifier"',
            ]
            if all(c in texts["dispatcher"] + texts["notifier"] for c in consumed) and (
                "errands_consumer_lag{" in texts["dispatcher"]
            ):
                break
            await asyncio.sleep(0.2)
    for name, text in texts.items():
        for metric in COMMON:
            assert metric in text, f"{name} lacks {metric}"
    assert 'route="/v1/tasks",status="201"' in texts["intake"]
    assert (
        'errands_events_produced_total{event_type="task.submitted",topic="errands.tasks.v1"}'
        in texts["intake"]
    )
    for consumed_by in consumed:
        assert consumed_by in texts["dispatcher"] + texts["notifier"]
    assert "errands_consumer_lag{" in texts["dispatcher"]
    for timing in (
        "errands_dispatch_submission_to_offer_seconds",
        "errands_dispatch_offer_to_assignment_seconds",
        "errands_dispatch_assignment_to_confirmation_seconds",
    ):
        assert f"# TYPE {timing} histogram" in texts["intake"]
