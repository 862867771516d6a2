"""A traceparent sent by an operator is carried into the events and the logs of all three services."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import aiohttp
import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from tests.client import bearer
from tests.conftest import Stack
from tests.e2e.test_walking_pipeline import events_of_task

pytestmark = pytest.mark.e2e


def _log_lines_with(system: ServiceProcesses, service: str, trace_id: str) -> list[dict[str, object]]:
    assert system.log_dir is not None
    lines = []
    for raw in (system.log_dir / f"{service}.log").read_text().splitlines():
        if trace_id in raw:
            lines.append(json.loads(raw))
    return lines


async def test_operator_traceparent_reaches_every_service_log_and_the_events(
    stack: Stack, system: ServiceProcesses
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{system.url('intake')}/v1/tasks",
            json={
                "kind": "meal",
                "pickup": {"lat": 29.93, "lon": 121.53},
                "dropoffs": [{"lat": 29.94, "lon": 121.54}],
            },
            headers={
                **bearer(tokens["operator_token"]),
                "Idempotency-Key": str(uuid.uuid4()),
                "traceparent": traceparent,
            },
        ) as response,
    ):
        assert response.status == 201, await response.text()
        task_id = (await response.json())["id"]

    (submitted,) = await events_of_task(stack.kafka_bootstrap, task_id, count=1)
    assert submitted.traceparent == traceparent

    for service in ("intake", "dispatcher", "notifier"):
        for _ in range(100):
            lines = _log_lines_with(system, service, trace_id)
            if lines:
                break
            await asyncio.sleep(0.1)
        assert lines, f"no {service} log line carries the trace id"
        assert all(line["trace_id"] == trace_id for line in lines)
    handled = _log_lines_with(system, "dispatcher", trace_id)
    assert any(line.get("event") == "event.handled" and line.get("task_id") == task_id for line in handled)
