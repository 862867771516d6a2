"""The operators' task API over HTTP: listing and paging, organisation scoping, cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.service_layer.progress import apply_progress
from shared.events import TASKS_TOPIC, CloudEvent, TaskCompleted, build_event
from tests.client import bearer
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body


async def get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def cancel(
    http: aiohttp.ClientSession, intake: str, task_id: str, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.post(f"{intake}/v1/tasks/{task_id}/cancel", headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def list_all(
    http: aiohttp.ClientSession, intake: str, headers: dict[str, str], query: str = "", limit: int = 200
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = await get(http, f"{intake}/v1/tasks?limit={limit}{query}{cursor}", headers)
        assert status == 200, page
        items += page["items"]
        if not page["has_more"]:
            return items
        cursor = f"&cursor={page['next_cursor']}"


async def eventually_listed(
    http: aiohttp.ClientSession, intake: str, headers: dict[str, str], expected: set[str], query: str = ""
) -> list[dict[str, Any]]:
    """A task is listed once every older writing transaction has ended; wait for that, never assume it."""
    deadline = time.monotonic() + 20
    while True:
        items = await list_all(http, intake, headers, query)
        if {item["id"] for item in items} >= expected or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.05)


async def test_listing_filters_by_status_kind_and_priority(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    made: dict[tuple[str, str], str] = {}
    for kind, priority in [
        ("meal", "urgent"),
        ("meal", "routine"),
        ("errand", "critical"),
        ("supply_run", "urgent"),
    ]:
        status, task, _ = await submit(http, intake, operator, task_body(kind=kind, priority=priority))
        assert status == 201, task
        made[(kind, priority)] = task["id"]
    status, _ = await cancel(http, intake, made[("meal", "routine")], operator.headers)
    assert status == 200

    everything = await eventually_listed(http, intake, operator.headers, set(made.values()))
    assert [item["id"] for item in everything] == list(made.values()), "listed in arrival order"
    assert {item["id"] for item in await list_all(http, intake, operator.headers, "&kind=meal")} == {
        made[("meal", "urgent")],
        made[("meal", "routine")],
    }
    assert {item["id"] for item in await list_all(http, intake, operator.headers, "&priority=urgent")} == {
        made[("meal", "urgent")],
        made[("supply_run", "urgent")],
    }
    cancelled = await list_all(http, intake, operator.headers, "&status=cancelled")
    assert [item["id"] for item in cancelled] == [made[("meal", "routine")]]
    assert {leg["status"] for leg in cancelled[0]["legs"]} == {"cancelled"}
    submitted = await list_all(http, intake, operator.headers, "&status=submitted&kind=meal&priority=urgent")
    assert [item["id"] for item in submitted] == [made[("meal", "urgent")]]


async def test_paging_never_skips_or_repeats_while_tasks_arrive(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    submitted: list[str] = []

    async def add(count: int) -> None:
        results = await asyncio.gather(*(submit(http, intake, operator) for _ in range(count)))
        assert all(status == 201 for status, _, _ in results)
        submitted.extend(task["id"] for _, task, _ in results)

    await add(7)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        status, page = await get(http, f"{intake}/v1/tasks?limit=3{cursor}", operator.headers)
        assert status == 200, page
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        pages += 1
        if pages <= 4:
            await add(2)  # concurrent arrivals while the client pages
        cursor = f"&cursor={page['next_cursor']}" if page["next_cursor"] else ""
        if not page["has_more"]:
            if set(seen) >= set(submitted):
                break
            await asyncio.sleep(0.05)  # the newest may not be listed yet: come back from where we were
        assert pages < 200, "paging does not end"
    assert len(seen) == len(set(seen)), "no task is listed twice"
    assert set(seen) == set(submitted), "no task is skipped"
    assert len(submitted) == 15


async def test_limit_and_cursor_are_validated(
    http: aiohttp.ClientSession, intake: str, operator: Operator
) -> None:
    for query, field in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("status=lost", "status"),
        ("kind=taxi", "kind"),
        ("priority=asap", "priority"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=%00%ff", "cursor"),
    ]:
        async with http.get(f"{intake}/v1/tasks?{query}", headers=operator.headers) as response:
            assert response.status == 400, query
            assert response.content_type == "application/problem+json"
            assert field in {error["field"] for error in (await response.json(content_type=None))["errors"]}
    status, page = await get(http, f"{intake}/v1/tasks?limit=200", operator.headers)
    assert status == 200 and page == {"items": [], "next_cursor": None, "has_more": False}


async def test_an_operator_sees_and_cancels_only_its_own_organisations_tasks(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack, demo_tokens: dict[str, str]
) -> None:
    from errands import admin

    other_org = await admin.new_organisation(stack.settings(), "other")
    other = Operator(uuid.UUID(other_org["id"]), other_org["operator_token"])
    _, mine, _ = await submit(http, intake, operator)
    _, theirs, _ = await submit(http, intake, other)

    assert (await get(http, f"{intake}/v1/tasks/{theirs['id']}", operator.headers))[0] == 404
    assert (await cancel(http, intake, theirs["id"], operator.headers))[0] == 404
    assert (await get(http, f"{intake}/v1/tasks/{theirs['id']}", other.headers))[1]["status"] == "submitted"
    mine_listed = await eventually_listed(http, intake, operator.headers, {mine["id"]})
    assert [item["id"] for item in mine_listed] == [mine["id"]]

    ops = bearer(demo_tokens["ops_token"])
    assert (await get(http, f"{intake}/v1/tasks/{theirs['id']}", ops))[0] == 200
    everyone = await eventually_listed(http, intake, ops, {mine["id"], theirs["id"]})
    assert {mine["id"], theirs["id"]} <= {item["id"] for item in everyone}
    status, problem = await cancel(http, intake, theirs["id"], ops)
    assert status == 403 and problem["status"] == 403
    status, _, _ = await submit(http, intake, Operator(operator.organisation_id, demo_tokens["ops_token"]))
    assert status == 403
    assert (await get(http, f"{intake}/v1/tasks/{theirs['id']}", other.headers))[1]["status"] == "submitted"

    nobody = {"Authorization": "Bearer erk_op_nonsense"}
    assert (await get(http, f"{intake}/v1/tasks", nobody))[0] == 401
    assert (await get(http, f"{intake}/v1/tasks/{uuid.uuid4()}", operator.headers))[0] == 404
    assert (await get(http, f"{intake}/v1/tasks/not-a-uuid", operator.headers))[0] == 404


async def tasks_topic_events(bootstrap: str, task_id: str) -> list[CloudEvent]:
    consumer = AIOKafkaConsumer(
        TASKS_TOPIC, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4()}", auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[CloudEvent] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            events = [CloudEvent.from_bytes(r.value) for records in batches.values() for r in records]
            found += [event for event in events if event.subject == task_id]
            if not batches and any(e.type == "task.cancelled" for e in found):
                break
    finally:
        await consumer.stop()
    return found


async def test_cancel_is_idempotent_and_publishes_task_cancelled_once(
    http: aiohttp.ClientSession, intake: str, operator: Operator, stack: Stack
) -> None:
    _, task, _ = await submit(http, intake, operator)
    async with http.post(
        f"{intake}/v1/tasks/{task['id']}/cancel", json={"reason": "recipient moved"}, headers=operator.headers
    ) as response:
        assert response.status == 200
        first = await response.json()
    assert first["status"] == "cancelled"
    assert {leg["status"] for leg in first["legs"]} == {"cancelled"}
    assert "cancelled" in first["transitions"]
    assert [entry["type"] for entry in first["timeline"]] == ["task.cancelled"]

    status, again = await cancel(http, intake, task["id"], operator.headers)
    assert status == 200
    assert again == first, "cancelling again changes nothing"

    events = await tasks_topic_events(stack.kafka_bootstrap, task["id"])
    assert [event.type for event in events] == ["task.submitted", "task.cancelled"]
    assert events[1].data["reason"] == "recipient moved"
    assert events[1].data["organisation_id"] == str(operator.organisation_id)


async def test_cancelling_a_completed_task_is_a_conflict(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, task, _ = await submit(http, intake, operator, task_body(dropoffs=[{"lat": -45.9, "lon": 170.5}]))
    _, completed = build_event(
        TaskCompleted(task_id=task["id"], leg_ids=[task["legs"][0]["id"]]),
        source="/notifier",
        subject=task["id"],
    )
    async with sessionmaker() as session, session.begin():
        await apply_progress(session, completed)

    status, problem = await cancel(http, intake, task["id"], operator.headers)
    assert status == 409, problem
    assert problem["title"] == "Conflict"
    status, after = await get(http, f"{intake}/v1/tasks/{task['id']}", operator.headers)
    assert after["status"] == "completed"
    assert datetime.fromisoformat(after["transitions"]["completed"]) <= datetime.now(UTC)
