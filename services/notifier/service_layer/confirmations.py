"""Confirm each delivered leg and complete the task exactly once, whatever order events arrive in."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.tables import DeliveryReportRow, LegRow, TaskRow, outbox
from services.notifier.domain.confirmation import check_delivery, task_is_complete
from services.notifier.service_layer.notifications import Notifications
from shared.events import (
    CloudEvent,
    EventData,
    LegConfirmationFailed,
    LegConfirmed,
    LegDelivered,
    TaskCancelled,
    TaskCompleted,
    TaskSubmitted,
    build_event,
    parse_data,
)
from shared.outbox import add_events

log = structlog.get_logger(__name__)


class Confirmer:
    def __init__(self, *, max_failures: int, notifications: Notifications | None = None) -> None:
        self._max_failures = max_failures
        self._notifications = notifications

    async def on_task_submitted(self, session: AsyncSession, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, TaskSubmitted)
        await session.execute(
            insert(TaskRow)
            .values(id=data.task_id, organisation_id=data.organisation_id, callback_url=data.callback_url)
            .on_conflict_do_update(index_elements=[TaskRow.id], set_={"callback_url": data.callback_url})
        )
        await session.execute(
            insert(LegRow).on_conflict_do_nothing(),
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
            ],
        )
        # Events that overtook the task (another topic, another partition) are handled now, in the
        # order they happened: forwarded ones first, then the delivery reports are checked.
        if self._notifications is not None:
            await self._notifications.replay_parked(session, data.task_id)
        await self._check_reports(session, data.task_id)

    async def on_task_cancelled(self, session: AsyncSession, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, TaskCancelled)
        await session.execute(
            insert(TaskRow)
            .values(id=data.task_id, organisation_id=data.organisation_id, cancelled=True)
            .on_conflict_do_update(index_elements=[TaskRow.id], set_={"cancelled": True})
        )

    async def on_leg_delivered(self, session: AsyncSession, event: CloudEvent) -> None:
        data = parse_data(event)
        assert isinstance(data, LegDelivered)
        await session.execute(
            insert(DeliveryReportRow)
            .values(
                event_id=event.id,
                leg_id=data.leg_id,
                task_id=data.task_id,
                volunteer_id=data.volunteer_id,
                code_hash=data.code_hash,
                photo_sha256=data.photo_sha256,
                reported_at=event.time,
            )
            .on_conflict_do_nothing()
        )
        await self._check_reports(session, data.task_id)

    async def _check_reports(self, session: AsyncSession, task_id: uuid.UUID) -> None:
        task = (
            await session.execute(select(TaskRow).where(TaskRow.id == task_id).with_for_update())
        ).scalar_one_or_none()
        if task is None:
            return  # the task's legs are not known yet; `task.submitted` will check these reports
        legs = {
            leg.id: leg
            for leg in (
                await session.execute(select(LegRow).where(LegRow.task_id == task_id).with_for_update())
            ).scalars()
        }
        reports = (
            await session.execute(
                select(DeliveryReportRow)
                .where(DeliveryReportRow.task_id == task_id, DeliveryReportRow.checked.is_(False))
                .order_by(DeliveryReportRow.reported_at)
            )
        ).scalars()
        events: list[EventData] = []
        for report in reports:
            report.checked = True
            leg = legs.get(report.leg_id)
            if leg is None or leg.status == "confirmed":
                continue
            if leg.flagged:
                # Too many wrong codes: guessing on must not pay off, so even the right code waits
                # until an operator resolves the leg.
                log.warning("confirmation.refused_flagged_leg", leg_id=str(leg.id))
                continue
            method = check_delivery(
                expected_code_hash=leg.code_hash,
                no_contact=leg.no_contact,
                code_hash=report.code_hash,
                photo_sha256=report.photo_sha256,
            )
            if method is not None:
                leg.status = "confirmed"
                leg.confirmed_at = report.reported_at
                events.append(
                    LegConfirmed(
                        task_id=task_id,
                        leg_id=leg.id,
                        volunteer_id=report.volunteer_id,
                        method=method,
                        photo_sha256=report.photo_sha256 if method == "photo" else None,
                    )
                )
            else:
                leg.failed_attempts += 1
                leg.flagged = leg.failed_attempts >= self._max_failures
                events.append(
                    LegConfirmationFailed(
                        task_id=task_id,
                        leg_id=leg.id,
                        volunteer_id=report.volunteer_id,
                        attempts=leg.failed_attempts,
                        flagged=leg.flagged,
                    )
                )
        if (
            task.completed_at is None
            and not task.cancelled
            and task_is_complete([leg.status for leg in legs.values()])
        ):
            confirmed = [leg.confirmed_at for leg in legs.values() if leg.confirmed_at is not None]
            task.completed_at = max(confirmed)
            events.append(TaskCompleted(task_id=task_id, leg_ids=sorted(legs)))
        await session.flush()
        if self._notifications is not None:
            await self._notifications.emit(session, task_id=task_id, events=events)
        else:
            await add_events(
                session, outbox, [build_event(e, source="/notifier", subject=task_id) for e in events]
            )
