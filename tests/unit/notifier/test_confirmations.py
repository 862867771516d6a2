"""Checking a task's delivery reports against its legs, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.notifier.adapters.tables import DeliveryReportRow, LegRow, TaskRow
from services.notifier.service_layer.confirmations import check_reports, resolve_leg
from shared.crypto import code_hash
from shared.events import (
    CloudEvent,
    LegConfirmationFailed,
    LegConfirmed,
    LegDecided,
    TaskCompleted,
    build_event,
)
from tests.unit.notifier.fakes import FakeRepository

KEY = b"test-key"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
VOLUNTEER = uuid.uuid4()


def _task(repository: FakeRepository, *codes: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    task_id = uuid.uuid4()
    repository.tasks[task_id] = TaskRow(id=task_id, organisation_id=uuid.uuid4(), cancelled=False)
    leg_ids = []
    for code in codes:
        leg_id = uuid.uuid4()
        repository.legs[leg_id] = LegRow(
            id=leg_id,
            task_id=task_id,
            code_hash=code_hash(KEY, leg_id, code),
            no_contact=False,
            status="open",
            failed_attempts=0,
            flagged=False,
        )
        leg_ids.append(leg_id)
    return task_id, leg_ids


def _report(repository: FakeRepository, task_id: uuid.UUID, leg_id: uuid.UUID, code: str) -> None:
    repository.reports.append(
        DeliveryReportRow(
            event_id=uuid.uuid4(),
            leg_id=leg_id,
            task_id=task_id,
            volunteer_id=VOLUNTEER,
            code_hash=code_hash(KEY, leg_id, code),
            photo_sha256=None,
            reported_at=T0 + timedelta(minutes=len(repository.reports)),
            checked=False,
        )
    )


async def test_the_right_code_confirms_the_leg_and_completes_the_task() -> None:
    repository = FakeRepository()
    task_id, [leg_id] = _task(repository, "123456")
    _report(repository, task_id, leg_id, "123456")

    events = await check_reports(repository, task_id, max_failures=3)

    assert [type(e) for e in events] == [LegConfirmed, TaskCompleted]
    assert repository.legs[leg_id].status == "confirmed"
    assert repository.tasks[task_id].completed_at == T0
    assert all(r.checked for r in repository.reports)


async def test_wrong_codes_are_counted_and_the_last_allowed_one_flags_the_leg() -> None:
    repository = FakeRepository()
    task_id, [leg_id] = _task(repository, "123456")
    for wrong in ("000001", "000002", "000003"):
        _report(repository, task_id, leg_id, wrong)

    events = await check_reports(repository, task_id, max_failures=3)

    failed = [e for e in events if isinstance(e, LegConfirmationFailed)]
    assert [(e.attempts, e.flagged) for e in failed] == [(1, False), (2, False), (3, True)]
    leg = repository.legs[leg_id]
    assert (leg.failed_attempts, leg.flagged, leg.status) == (3, True, "open")


async def test_a_flagged_leg_refuses_even_the_right_code() -> None:
    repository = FakeRepository()
    task_id, [leg_id] = _task(repository, "123456")
    for wrong in ("000001", "000002"):
        _report(repository, task_id, leg_id, wrong)
    _report(repository, task_id, leg_id, "123456")

    events = await check_reports(repository, task_id, max_failures=2)

    assert [type(e) for e in events] == [LegConfirmationFailed, LegConfirmationFailed]
    assert repository.legs[leg_id].status == "open"
    assert repository.tasks[task_id].completed_at is None


async def test_reports_for_a_task_not_yet_known_wait_unchecked() -> None:
    repository = FakeRepository()
    task_id, leg_id = uuid.uuid4(), uuid.uuid4()
    _report(repository, task_id, leg_id, "123456")

    assert await check_reports(repository, task_id, max_failures=3) == []
    assert not repository.reports[0].checked


async def test_the_task_completes_only_when_every_leg_is_confirmed() -> None:
    repository = FakeRepository()
    task_id, [first, second] = _task(repository, "111111", "222222")
    _report(repository, task_id, first, "111111")
    assert [type(e) for e in await check_reports(repository, task_id, max_failures=3)] == [LegConfirmed]

    _report(repository, task_id, second, "222222")
    events = await check_reports(repository, task_id, max_failures=3)

    assert [type(e) for e in events] == [LegConfirmed, TaskCompleted]
    assert repository.tasks[task_id].completed_at == T0 + timedelta(minutes=1)


def _decided(task_id: uuid.UUID, leg_id: uuid.UUID) -> CloudEvent:
    _, event = build_event(
        LegDecided(
            task_id=task_id, leg_id=leg_id, action="confirm", status="confirmed", volunteer_id=VOLUNTEER
        ),
        source="/dispatcher",
        subject=task_id,
    )
    event.time = T0 + timedelta(hours=1)
    return event


async def test_an_operator_confirms_a_flagged_leg_and_the_task_completes() -> None:
    repository = FakeRepository()
    task_id, [flagged, done] = _task(repository, "111111", "222222")
    for wrong in ("000001", "000002"):
        _report(repository, task_id, flagged, wrong)
    _report(repository, task_id, done, "222222")
    await check_reports(repository, task_id, max_failures=2)

    event = _decided(task_id, flagged)
    events = await resolve_leg(repository, task_id, flagged, confirm=True, event=event)

    assert [type(e) for e in events] == [LegConfirmed, TaskCompleted]
    assert isinstance(events[0], LegConfirmed) and events[0].method == "operator"
    assert repository.legs[flagged].status == "confirmed"
    assert await resolve_leg(repository, task_id, flagged, confirm=True, event=event) == [], "once"


async def test_a_failed_leg_takes_no_report_and_its_task_never_completes() -> None:
    repository = FakeRepository()
    task_id, [leg_id] = _task(repository, "123456")
    assert (
        await resolve_leg(repository, task_id, leg_id, confirm=False, event=_decided(task_id, leg_id)) == []
    )
    assert repository.legs[leg_id].status == "failed"
    _report(repository, task_id, leg_id, "123456")
    assert await check_reports(repository, task_id, max_failures=3) == []
    assert repository.tasks[task_id].completed_at is None
