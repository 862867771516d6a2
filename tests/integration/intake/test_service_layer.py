"""Intake's use cases against the real database: paging past late commits, read model, retention."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.adapters.tables import IdempotencyRow
from services.intake.domain.model import ListPosition
from services.intake.entrypoints.http import ERROR_STATUSES
from services.intake.entrypoints.schemas import TaskIn, TaskListQuery
from services.intake.service_layer.progress import apply_progress, apply_progress_batch
from services.intake.service_layer.submission import Keys, purge_idempotency_keys, submit_task
from services.intake.service_layer.tasks import get_task, list_tasks
from shared.consumer import PermanentError
from shared.errors import Answer, IdempotencyKeyReused, answer_for
from shared.events import (
    EventData,
    LegAssigned,
    LegConfirmed,
    LegDelivered,
    LegOffered,
    LegOfferExpired,
    LegPickedUp,
    TaskCompleted,
    build_event,
)
from shared.settings import Settings
from tests.client import until
from tests.integration.intake.conftest import task_body

KEYS = Keys(code_key=b"test-code-key", data_key=b"k" * 32)


async def submit(
    sessionmaker: async_sessionmaker[AsyncSession],
    organisation_id: uuid.UUID,
    key: str | None = None,
    **body: Any,
) -> dict[str, Any]:
    async with sessionmaker() as session, session.begin():
        submission = await submit_task(
            session=session,
            organisation_id=organisation_id,
            idempotency_key=key or str(uuid.uuid4()),
            body=TaskIn.model_validate(task_body(**body)),
            keys=KEYS,
        )
    return submission.task


async def listed(
    sessionmaker: async_sessionmaker[AsyncSession], organisation_id: uuid.UUID, after: Any = None
) -> Any:
    async with sessionmaker() as session:
        return await list_tasks(
            session=session, organisation_id=organisation_id, query=TaskListQuery(limit=200), after=after
        )


async def test_a_task_committed_late_is_not_skipped_by_a_cursor(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = uuid.uuid4()
    # `early` takes its sequence number first but commits after `late`: the race a plain
    # "seq > cursor" page would lose `early` to.
    async with sessionmaker() as slow:
        await slow.begin()
        early = await submit_task(
            session=slow,
            organisation_id=org,
            idempotency_key="early",
            body=TaskIn.model_validate(task_body()),
            keys=KEYS,
        )
        late = await submit(sessionmaker, org, "late")
        first_page = await listed(sessionmaker, org)
        assert late["id"] not in [item["id"] for item in first_page["items"]], (
            "a task is not listed while an older writer could still add one before it"
        )
        await slow.commit()
    cursor = ListPosition.decode(first_page["next_cursor"]) if first_page["next_cursor"] else None

    async def both_listed() -> list[str] | None:
        # A page holds back what a transaction older than the newest task could still precede, in
        # the whole database cluster: another connection's transaction may delay them a moment.
        second_page = await listed(sessionmaker, org, cursor)
        ids = [item["id"] for item in first_page["items"] + second_page["items"]]
        return ids if len(ids) >= 2 else None

    assert await until(both_listed, timeout_s=30, what="both tasks listed") == [
        early.task["id"],
        late["id"],
    ]


async def test_a_replay_answers_the_first_response_and_another_body_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = uuid.uuid4()
    first = await submit(sessionmaker, org, "k1")
    async with sessionmaker() as session, session.begin():
        again = await submit_task(
            session=session,
            organisation_id=org,
            idempotency_key="k1",
            body=TaskIn.model_validate(task_body()),
            keys=KEYS,
        )
    assert again.replayed and again.task == first
    with pytest.raises(IdempotencyKeyReused) as refused:
        await submit(sessionmaker, org, "k1", priority="critical")
    assert answer_for(refused.value, ERROR_STATUSES) == Answer(422, "Idempotency key reused")
    elsewhere = await submit(sessionmaker, uuid.uuid4(), "k1")
    assert elsewhere["id"] != first["id"], "keys are scoped per organisation"


async def test_idempotency_records_are_purged_after_the_retention_and_never_before(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = uuid.uuid4()
    retention = Settings().idempotency_retention_s
    old = await submit(sessionmaker, org, "old")
    young = await submit(sessionmaker, org, "young")
    async with sessionmaker() as session, session.begin():
        for key, age in (("old", retention + 60), ("young", retention - 60)):
            await session.execute(
                update(IdempotencyRow)
                .where(IdempotencyRow.organisation_id == org, IdempotencyRow.key == key)
                .values(created_at=text(f"now() - interval '{int(age)} seconds'"))
            )
    async with sessionmaker() as session, session.begin():
        purged = await purge_idempotency_keys(session=session, retention_s=retention)
    assert purged >= 1
    async with sessionmaker() as session:
        keys = set(
            (
                await session.execute(
                    text("SELECT key FROM intake.idempotency_keys WHERE organisation_id = :o"), {"o": org}
                )
            )
            .scalars()
            .all()
        )
    assert keys == {"young"}
    assert (await submit(sessionmaker, org, "young"))["id"] == young["id"], "a young key still replays"
    assert (await submit(sessionmaker, org, "old"))["id"] != old["id"], "an expired key is free again"


async def progress(sessionmaker: async_sessionmaker[AsyncSession], task_id: str, data: EventData) -> None:
    _, event = build_event(data, source="/dispatcher", subject=task_id)
    async with sessionmaker() as session, session.begin():
        await apply_progress(session, event)


async def test_the_read_model_follows_a_leg_from_offer_to_confirmation(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = uuid.uuid4()
    task = await submit(sessionmaker, org)
    tid, (leg0, leg1) = task["id"], (task["legs"][0]["id"], task["legs"][1]["id"])
    alice, bob = uuid.uuid4(), uuid.uuid4()
    offer = uuid.uuid4()
    expires = datetime.now(UTC) + timedelta(minutes=1)
    steps: list[tuple[EventData, str, list[str]]] = [
        (
            LegOffered(task_id=tid, leg_id=leg0, offer_id=offer, volunteer_id=bob, expires_at=expires),
            "dispatching",
            ["offered", "pending"],
        ),
        (
            LegOfferExpired(task_id=tid, leg_id=leg0, offer_id=offer, volunteer_id=bob),
            "dispatching",
            ["pending", "pending"],
        ),
        (
            LegAssigned(task_id=tid, leg_id=leg0, volunteer_id=alice, volunteer_name="Alice"),
            "in_progress",
            ["assigned", "pending"],
        ),
        (LegPickedUp(task_id=tid, leg_id=leg0, volunteer_id=alice), "in_progress", ["picked_up", "pending"]),
        (LegDelivered(task_id=tid, leg_id=leg0, volunteer_id=alice), "in_progress", ["delivered", "pending"]),
        (
            LegConfirmed(task_id=tid, leg_id=leg0, volunteer_id=alice, method="code"),
            "in_progress",
            ["confirmed", "pending"],
        ),
        (
            LegAssigned(task_id=tid, leg_id=leg1, volunteer_id=bob, volunteer_name="Bob"),
            "in_progress",
            ["confirmed", "assigned"],
        ),
        (
            LegConfirmed(task_id=tid, leg_id=leg1, volunteer_id=bob, method="photo"),
            "in_progress",
            ["confirmed", "confirmed"],
        ),
        (TaskCompleted(task_id=tid, leg_ids=[leg0, leg1]), "completed", ["confirmed", "confirmed"]),
    ]
    for data, task_status, leg_statuses in steps:
        await progress(sessionmaker, tid, data)
        async with sessionmaker() as session:
            view = await get_task(session=session, task_id=uuid.UUID(tid), organisation_id=org)
        assert (view["status"], [leg["status"] for leg in view["legs"]]) == (task_status, leg_statuses), data
    assert view["legs"][0]["volunteer"] == {"id": str(alice), "name": "Alice"}
    assert view["legs"][1]["volunteer"] == {"id": str(bob), "name": "Bob"}
    assert set(view["transitions"]) == {"submitted", "dispatching", "in_progress", "completed"}
    assert {"pending", "offered", "assigned", "picked_up", "delivered", "confirmed"} <= set(
        view["legs"][0]["transitions"]
    )
    assert [entry["type"] for entry in view["timeline"]] == [
        "leg.offered",
        "leg.offer_expired",
        "leg.assigned",
        "leg.picked_up",
        "leg.delivered",
        "leg.confirmed",
        "leg.assigned",
        "leg.confirmed",
        "task.completed",
    ]


async def test_an_event_for_an_unknown_task_or_leg_is_permanent(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(PermanentError):
        await progress(sessionmaker, str(uuid.uuid4()), TaskCompleted(task_id=uuid.uuid4(), leg_ids=[]))
    task = await submit(sessionmaker, uuid.uuid4())
    with pytest.raises(PermanentError):
        await progress(
            sessionmaker,
            task["id"],
            LegPickedUp(task_id=task["id"], leg_id=uuid.uuid4(), volunteer_id=uuid.uuid4()),
        )


def _read_model(view: dict[str, Any]) -> Any:
    """What the read model says of a task, without the moments it was said at."""
    return (
        view["status"],
        sorted(view["transitions"]),
        [(leg["status"], sorted(leg["transitions"]), leg.get("volunteer")) for leg in view["legs"]],
        [entry["type"] for entry in view["timeline"]],
    )


async def test_a_batch_of_events_folds_as_one_event_at_a_time_does(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = uuid.uuid4()
    alice, bob = uuid.uuid4(), uuid.uuid4()
    expires = datetime.now(UTC) + timedelta(minutes=1)

    def story(task: dict[str, Any]) -> list[EventData]:
        """Several events of one task, some of them on the same leg one after another."""
        tid, (leg0, leg1) = task["id"], (task["legs"][0]["id"], task["legs"][1]["id"])
        offer = uuid.uuid4()
        return [
            LegOffered(task_id=tid, leg_id=leg0, offer_id=offer, volunteer_id=bob, expires_at=expires),
            LegOfferExpired(task_id=tid, leg_id=leg0, offer_id=offer, volunteer_id=bob),
            LegAssigned(task_id=tid, leg_id=leg0, volunteer_id=alice, volunteer_name="Alice"),
            LegAssigned(task_id=tid, leg_id=leg1, volunteer_id=bob, volunteer_name="Bob"),
            LegPickedUp(task_id=tid, leg_id=leg0, volunteer_id=alice),
            LegConfirmed(task_id=tid, leg_id=leg0, volunteer_id=alice, method="code"),
            LegConfirmed(task_id=tid, leg_id=leg1, volunteer_id=bob, method="photo"),
            TaskCompleted(task_id=tid, leg_ids=[leg0, leg1]),
        ]

    alone = [await submit(sessionmaker, org) for _ in range(3)]
    together = [await submit(sessionmaker, org) for _ in range(3)]
    stories_alone = [story(task) for task in alone]
    stories_together = [story(task) for task in together]
    # The tasks' events interleaved (a partition carries many tasks), the last task's cut short.
    order = [(t, i) for i in range(8) for t in range(3) if t < 2 or i < 4]
    for t, i in order:
        await progress(sessionmaker, alone[t]["id"], stories_alone[t][i])
    batch = [
        build_event(stories_together[t][i], source="/dispatcher", subject=together[t]["id"])[1]
        for t, i in order
    ]
    async with sessionmaker() as session, session.begin():
        await apply_progress_batch(session, batch)

    async def view(task: dict[str, Any]) -> Any:
        async with sessionmaker() as session:
            return await get_task(session=session, task_id=uuid.UUID(task["id"]), organisation_id=org)

    for one, other in zip(alone, together, strict=True):
        assert _read_model(await view(other)) == _read_model(await view(one))
    assert (await view(together[0]))["status"] == "completed"
    assert (await view(together[2]))["status"] == "in_progress", "the task whose story was cut short"


async def test_a_batch_with_an_event_of_an_unknown_task_is_refused_whole(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = uuid.uuid4()
    task = await submit(sessionmaker, org)
    known = LegAssigned(task_id=task["id"], leg_id=task["legs"][0]["id"], volunteer_id=uuid.uuid4())
    unknown = uuid.uuid4()
    batch = [
        build_event(known, source="/dispatcher", subject=task["id"])[1],
        build_event(TaskCompleted(task_id=unknown, leg_ids=[]), source="/dispatcher", subject=str(unknown))[
            1
        ],
    ]
    with pytest.raises(PermanentError):
        async with sessionmaker() as session, session.begin():
            await apply_progress_batch(session, batch)
    async with sessionmaker() as session:
        view = await get_task(session=session, task_id=uuid.UUID(task["id"]), organisation_id=org)
    assert view["legs"][0]["status"] == "pending" and view["timeline"] == [], "nothing of the batch stays"
