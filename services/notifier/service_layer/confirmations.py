"""Confirm each delivered leg and complete the task exactly once, whatever order events arrive in."""

from __future__ import annotations

import uuid
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.repository import Repository
from services.notifier.adapters.tables import DeliveryReportRow, LegRow, TaskRow
from services.notifier.domain.confirmation import Confirmed, Failed, judge_report, task_is_complete
from services.notifier.service_layer.notifications import Notifications
from shared.events import (
    CloudEvent,
    EventData,
    LegConfirmationFailed,
    LegConfirmed,
    LegDecided,
    LegDelivered,
    LegFailed,
    TaskCancelled,
    TaskCompleted,
    TaskSubmitted,
    build_event,
    parse_data,
)

log = structlog.get_logger(__name__)


class ConfirmationRecords(Protocol):
    """What checking a task's delivery reports reads and changes (`Repository`, or a fake in tests)."""

    async def task_for_update(self, task_id: uuid.UUID) -> TaskRow | None: ...
    async def legs_for_update(self, task_id: uuid.UUID) -> dict[uuid.UUID, LegRow]: ...
    async def unchecked_reports(self, task_id: uuid.UUID) -> list[DeliveryReportRow]: ...
    async def flush(self) -> None: ...


async def check_reports(
    records: ConfirmationRecords, task_id: uuid.UUID, *, max_failures: int
) -> list[EventData]:
    """Judge the task's unchecked reports in the order they were made; the events that follow."""
    task = await records.task_for_update(task_id)
    if task is None:
        return []  # the task's legs are not known yet; `task.submitted` will check these reports
    legs = await records.legs_for_update(task_id)
    events: list[EventData] = []
    for report in await records.unchecked_reports(task_id):
        report.checked = True
        leg = legs.get(report.leg_id)
        if leg is None:
            continue
        verdict = judge_report(
            leg_status=leg.status,
            leg_flagged=leg.flagged,
            failed_attempts=leg.failed_attempts,
            expected_code_hash=leg.code_hash,
            no_contact=leg.no_contact,
            code_hash=report.code_hash,
            photo_sha256=report.photo_sha256,
            max_failures=max_failures,
        )
        if isinstance(verdict, Confirmed):
            leg.status = "confirmed"
            leg.confirmed_at = report.reported_at
            events.append(
                LegConfirmed(
                    task_id=task_id,
                    leg_id=leg.id,
                    volunteer_id=report.volunteer_id,
                    method=verdict.method,
                    photo_sha256=report.photo_sha256 if verdict.method == "photo" else None,
                )
            )
        elif isinstance(verdict, Failed):
            leg.failed_attempts, leg.flagged = verdict.attempts, verdict.flagged
            events.append(
                LegConfirmationFailed(
                    task_id=task_id,
                    leg_id=leg.id,
                    volunteer_id=report.volunteer_id,
                    attempts=verdict.attempts,
                    flagged=verdict.flagged,
                )
            )
        elif verdict == "flagged":
            log.warning("confirmation.refused_flagged_leg", leg_id=str(leg.id))
    if (
        task.completed_at is None
        and not task.cancelled
        and task_is_complete([leg.status for leg in legs.values()])
    ):
        confirmed = [leg.confirmed_at for leg in legs.values() if leg.confirmed_at is not None]
        task.completed_at = task.ended_at = max(confirmed)
        events.append(TaskCompleted(task_id=task_id, leg_ids=sorted(legs)))
    await records.flush()
    return events


async def resolve_leg(
    records: ConfirmationRecords, task_id: uuid.UUID, leg_id: uuid.UUID, *, confirm: bool, event: CloudEvent
) -> list[EventData]:
    """An operator resolved a leg: confirmed by other proof (`leg.confirmed`, method "operator", and
    `task.completed` when it was the last) or failed (no report confirms it from then on)."""
    task = await records.task_for_update(task_id)
    legs = await records.legs_for_update(task_id)
    leg = legs.get(leg_id)
    if task is None or leg is None or leg.status in ("confirmed", "failed"):
        return []
    events: list[EventData] = []
    if not confirm:
        leg.status = "failed"
    else:
        leg.status, leg.confirmed_at = "confirmed", event.time
        holder = event.data.get("volunteer_id")
        events.append(
            LegConfirmed(
                task_id=task_id,
                leg_id=leg_id,
                volunteer_id=uuid.UUID(str(holder)) if holder else uuid.UUID(int=0),
                method="operator",
            )
        )
        if (
            task.completed_at is None
            and not task.cancelled
            and task_is_complete([leg.status for leg in legs.values()])
        ):
            task.completed_at = max(leg.confirmed_at for leg in legs.values() if leg.confirmed_at)
            events.append(TaskCompleted(task_id=task_id, leg_ids=sorted(legs)))
    await records.flush()
    return events


class Confirmer:
    def __init__(self, *, max_failures: int, notifications: Notifications | None = None) -> None:
        self._max_failures = max_failures
        self._notifications = notifications

    async def on_task_submitted(self, session: AsyncSession, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, TaskSubmitted)
        repository = Repository(session)
        await repository.save_task(
            task_id=data.task_id, organisation_id=data.organisation_id, callback_url=data.callback_url
        )
        await repository.add_legs(
            [
                {
                    "id": leg.leg_id,
                    "task_id": data.task_id,
                    "code_hash": leg.code_hash,
                    "no_contact": leg.dropoff.no_contact,
                    "language": leg.dropoff.language,
                    "recipient_sealed": leg.dropoff.recipient_sealed,
                }
                for leg in data.legs
            ]
        )
        # Events that overtook the task (another topic, another partition) are handled now, in the
        # order they happened: forwarded ones first, then the delivery reports are checked.
        if self._notifications is not None:
            await self._notifications.replay_parked(repository, data.task_id)
        await self._check_reports(repository, data.task_id)

    async def on_task_cancelled(self, session: AsyncSession, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, TaskCancelled)
        await Repository(session).cancel_task(task_id=data.task_id, organisation_id=data.organisation_id)

    async def on_leg_delivered(self, session: AsyncSession, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, LegDelivered)
        repository = Repository(session)
        await repository.add_delivery_report(
            {
                "event_id": event.id,
                "leg_id": data.leg_id,
                "task_id": data.task_id,
                "volunteer_id": data.volunteer_id,
                "code_hash": data.code_hash,
                "photo_sha256": data.photo_sha256,
                "note": data.note,
                "reported_at": event.time,
            }
        )
        await self._check_reports(repository, data.task_id)

    async def on_leg_decided(self, session: AsyncSession, event: CloudEvent) -> None:
        """`leg.decided`: an operator's `confirm` of a flagged delivery is this service's confirmation."""
        data = parse_data(event)
        assert isinstance(data, LegDecided)
        if data.action == "confirm":
            repository = Repository(session)
            events = await resolve_leg(repository, data.task_id, data.leg_id, confirm=True, event=event)
            await self._emit(repository, data.task_id, events)

    async def on_leg_failed(self, session: AsyncSession, event: CloudEvent) -> None:
        """`leg.failed`: the leg will never be confirmed, and the task never completed."""
        data = parse_data(event)
        assert isinstance(data, LegFailed)
        await resolve_leg(Repository(session), data.task_id, data.leg_id, confirm=False, event=event)

    async def _check_reports(self, repository: Repository, task_id: uuid.UUID) -> None:
        events = await check_reports(repository, task_id, max_failures=self._max_failures)
        await self._emit(repository, task_id, events)

    async def _emit(self, repository: Repository, task_id: uuid.UUID, events: list[EventData]) -> None:
        if self._notifications is not None:
            await self._notifications.emit(repository, task_id=task_id, events=events)
        else:
            await repository.publish([build_event(e, source="/notifier", subject=task_id) for e in events])
