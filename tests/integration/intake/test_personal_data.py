"""Personal data goes: after the retention, in every service that holds a copy, and on request at once."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from services.dispatcher.adapters.photo_store import PhotoStores
from services.dispatcher.service_layer import personal_data as dispatcher_erasure
from services.intake.service_layer import personal_data as intake_erasure
from services.notifier.service_layer import personal_data as notifier_erasure
from shared.errors import DomainError
from tests.client import bearer, until
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body

# Far from every other suite's volunteers: nobody is offered these legs.
NAME, PHONE, EMAIL, NOTE = "Wang Xiuying", "+86 139-5741-0001", "Wang.XY@example.cn", "gate code 4471, dog"


def _body(phone: str = PHONE) -> dict[str, Any]:
    return task_body(
        notes="second floor",
        dropoffs=[
            {
                "lat": -45.88,
                "lon": 170.51,
                "address": "12 Lane 3, Haishu",
                "recipient_name": NAME,
                "recipient_phone": phone,
                "recipient_email": EMAIL,
                "notes": NOTE,
            }
        ],
    )


async def _rows(stack: Stack, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(stack.settings().asyncpg_dsn)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
        return rows
    finally:
        await connection.close()


async def _copies(stack: Stack, task_id: str) -> str:
    """Everything the three services hold of the task's people, as one text to search."""
    task = uuid.UUID(task_id)
    parts = [
        *(
            r["request"]
            for r in await _rows(stack, "SELECT request::text FROM intake.tasks WHERE id = $1", task)
        ),
        *(
            r["details"]
            for r in await _rows(stack, "SELECT details::text FROM dispatch.legs WHERE task_id = $1", task)
        ),
        *(
            r["recipient_sealed"] or ""
            for r in await _rows(stack, "SELECT recipient_sealed FROM notify.legs WHERE task_id = $1", task)
        ),
    ]
    return "\n".join(str(p) for p in parts)


async def _known_everywhere(stack: Stack, task_id: str) -> None:
    """Wait until the dispatcher and the notifier have taken the task in (their copies exist)."""

    async def known() -> bool:
        task = uuid.UUID(task_id)
        dispatcher = await _rows(stack, "SELECT 1 FROM dispatch.legs WHERE task_id = $1", task)
        notifier = await _rows(stack, "SELECT 1 FROM notify.legs WHERE task_id = $1", task)
        return bool(dispatcher and notifier)

    await until(known, timeout_s=30, what="the task reached the dispatcher and the notifier")


async def _cancelled(stack: Stack, http: aiohttp.ClientSession, intake: str, operator: Operator) -> str:
    status, task, _ = await submit(http, intake, operator, _body())
    assert status == 201
    await _known_everywhere(stack, task["id"])
    async with http.post(f"{intake}/v1/tasks/{task['id']}/cancel", headers=operator.headers) as response:
        assert response.status == 200

    async def everywhere_over() -> bool:
        task_id = uuid.UUID(task["id"])
        legs = await _rows(stack, "SELECT status FROM dispatch.legs WHERE task_id = $1", task_id)
        notifier = await _rows(stack, "SELECT ended_at FROM notify.tasks WHERE id = $1", task_id)
        return all(r["status"] == "cancelled" for r in legs) and bool(notifier and notifier[0]["ended_at"])

    await until(everywhere_over, timeout_s=30, what="the cancellation reached every service")
    return str(task["id"])


async def test_an_admin_erases_a_person_everywhere_with_one_call(
    stack: Stack, http: aiohttp.ClientSession, intake: str, operator: Operator, demo_tokens: dict[str, str]
) -> None:
    task_id = await _cancelled(stack, http, intake, operator)
    sealed_before = await _copies(stack, task_id)
    assert NAME in sealed_before and NOTE in sealed_before

    async with http.post(
        f"{intake}/v1/erasures",
        json={"phone": "8613957410001", "organisation_id": str(operator.organisation_id)},
        headers=bearer(demo_tokens["admin_token"]),
    ) as response:
        assert response.status == 200, await response.text()
        assert await response.json() == {"tasks": 1, "legs": 1, "fields": 7, "recipients": 0}

    async def erased_everywhere() -> bool:
        rows = await _rows(
            stack, "SELECT recipient_sealed FROM notify.legs WHERE task_id = $1", uuid.UUID(task_id)
        )
        details = await _rows(
            stack, "SELECT erased_at FROM dispatch.legs WHERE task_id = $1", uuid.UUID(task_id)
        )
        return all(r["recipient_sealed"] is None for r in rows) and all(d["erased_at"] for d in details)

    await until(erased_everywhere, timeout_s=30, what="the dispatcher and the notifier erased their copies")
    left = await _copies(stack, task_id)
    for trace in (NAME, EMAIL, PHONE, NOTE, "second floor", "12 Lane 3"):
        assert trace not in left
    # What reports need stays: the task, its legs, their coordinates and outcome.
    (task,) = await _rows(stack, "SELECT status, request FROM intake.tasks WHERE id = $1", uuid.UUID(task_id))
    assert task["status"] == "cancelled" and '"lat": -45.88' in task["request"]

    # On the audit trail, by ids alone.
    audited = await _rows(
        stack,
        "SELECT action, coalesce(detail::text, '') AS detail FROM auth.audit WHERE task_id = $1 ORDER BY at",
        uuid.UUID(task_id),
    )
    assert "personal_data.erased" in [row["action"] for row in audited]
    assert not any(NAME in row["detail"] or "139" in row["detail"] for row in audited)

    # Erased already: asked again, nothing is left to erase.
    async with http.post(
        f"{intake}/v1/erasures", json={"email": EMAIL.upper()}, headers=bearer(demo_tokens["admin_token"])
    ) as response:
        assert (await response.json())["tasks"] == 0


async def test_a_person_with_a_task_in_progress_is_not_erased(
    stack: Stack, http: aiohttp.ClientSession, intake: str, operator: Operator, demo_tokens: dict[str, str]
) -> None:
    phone = f"+86 138 {uuid.uuid4().int % 10**8:08d}"
    status, task, _ = await submit(http, intake, operator, _body(phone))
    assert status == 201
    async with http.post(
        f"{intake}/v1/erasures", json={"phone": phone}, headers=bearer(demo_tokens["admin_token"])
    ) as response:
        assert response.status == 409
        problem = await response.json()
        assert "finish or cancel" in problem["detail"]
        assert [e["message"] for e in problem["errors"]] == [task["id"]]
    assert NAME in await _copies(stack, task["id"])

    with pytest.raises(DomainError, match="still in progress"):
        await admin.erase(stack.settings(), phone=phone, email=None, organisation_id=None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "$"),
        ({"phone": PHONE, "email": EMAIL}, "$"),
        ({"phone": "12-34"}, "$.phone"),
        ({"email": "not-an-address"}, "$.email"),
    ],
)
async def test_an_erasure_names_one_person_clearly(
    http: aiohttp.ClientSession, intake: str, demo_tokens: dict[str, str], body: dict[str, Any], field: str
) -> None:
    async with http.post(
        f"{intake}/v1/erasures", json=body, headers=bearer(demo_tokens["admin_token"])
    ) as response:
        assert response.status == 422
        assert field in [e["field"] for e in (await response.json())["errors"]]


async def test_only_an_admin_erases(http: aiohttp.ClientSession, intake: str, operator: Operator) -> None:
    async with http.post(
        f"{intake}/v1/erasures", json={"phone": PHONE}, headers=operator.headers
    ) as response:
        assert response.status == 403


async def test_each_service_erases_ended_tasks_after_the_retention_once_even_when_run_twice_at_once(
    stack: Stack,
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ended = [await _cancelled(stack, http, intake, operator) for _ in range(3)]
    status, going, _ = await submit(http, intake, operator, _body())
    assert status == 201
    await _known_everywhere(stack, going["id"])

    async def twice_at_once(job: Any) -> int:
        async def one() -> int:
            done = 0
            while True:
                async with sessionmaker() as session, session.begin():
                    batch = await job(session, retention_s=0, batch=2)
                if not batch:
                    return done
                done += batch

        first, second = await asyncio.gather(one(), one())
        return first + second

    # Other tests' ended tasks may be erased too: count only that each of ours is, once.
    assert await twice_at_once(intake_erasure.erase_ended_tasks) >= 3
    photos = PhotoStores.from_settings(stack.settings())
    assert await twice_at_once(partial(dispatcher_erasure.erase_ended_legs, photos=photos)) >= 3
    assert await twice_at_once(notifier_erasure.erase_ended_tasks) >= 3
    for task_id in ended:
        left = await _copies(stack, task_id)
        assert NAME not in left and NOTE not in left and EMAIL not in left
    # A task still going keeps everything, in every service.
    assert NAME in await _copies(stack, going["id"])
    (kept,) = await _rows(stack, "SELECT erased_at FROM intake.tasks WHERE id = $1", uuid.UUID(going["id"]))
    assert kept["erased_at"] is None

    # The default retention keeps a task that ended just now.
    async with sessionmaker() as session, session.begin():
        assert await intake_erasure.erase_ended_tasks(session, retention_s=30 * 86400, batch=10) == 0


async def test_an_erasure_takes_the_persons_register_record_too(
    http: aiohttp.ClientSession, intake: str, operator: Operator, demo_tokens: dict[str, str]
) -> None:
    phone = f"+86 136 {uuid.uuid4().int % 10**8:08d}"
    async with http.post(
        f"{intake}/v1/recipients",
        json={"name": NAME, "phone": phone, "lat": -45.9, "lon": 170.5},
        headers=operator.headers,
    ) as response:
        assert response.status == 201, await response.text()
        recipient = await response.json()
    digits_only = "".join(ch for ch in phone if ch.isdigit())
    async with http.post(
        f"{intake}/v1/erasures", json={"phone": digits_only}, headers=bearer(demo_tokens["admin_token"])
    ) as response:
        assert response.status == 200
        assert (await response.json())["recipients"] == 1
    async with http.get(f"{intake}/v1/recipients/{recipient['id']}", headers=operator.headers) as response:
        assert response.status == 404
