"""The notifier's records in PostgreSQL: every query it makes, with the lock each one needs.

One `Repository` wraps one session (one request, one consumed event, one worker step); the caller
owns the transaction. Reads that serve operators are scoped by organisation in SQL; `None` means
every organisation (ops and admin readers).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.tables import (
    CallbackSecretRow,
    DeliveryAttemptRow,
    DeliveryReportRow,
    DeliveryRow,
    LegRow,
    ParkedEventRow,
    RecipientMessageRow,
    TaskRow,
    WebhookEndpointRow,
    outbox,
)
from shared.events import CloudEvent
from shared.outbox import add_events

# The channel the delivery workers LISTEN on for new work.
WAKE_CHANNEL = "notify_deliveries"


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def flush(self) -> None:
        await self.session.flush()

    async def publish(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        """Queue events on the outbox; they are published only if the transaction commits."""
        await add_events(self.session, outbox, events)

    async def wake_worker(self) -> None:
        """NOTIFY the delivery workers; PostgreSQL delivers it when (and only if) the transaction commits."""
        await self.session.execute(select(func.pg_notify(WAKE_CHANNEL, "")))

    # --- tasks, legs and their delivery reports ------------------------------------------------

    async def save_task(
        self, *, task_id: uuid.UUID, organisation_id: uuid.UUID, callback_url: str | None
    ) -> None:
        await self.session.execute(
            insert(TaskRow)
            .values(id=task_id, organisation_id=organisation_id, callback_url=callback_url)
            .on_conflict_do_update(index_elements=[TaskRow.id], set_={"callback_url": callback_url})
        )

    async def cancel_task(self, *, task_id: uuid.UUID, organisation_id: uuid.UUID) -> None:
        await self.session.execute(
            insert(TaskRow)
            .values(id=task_id, organisation_id=organisation_id, cancelled=True, ended_at=func.now())
            .on_conflict_do_update(
                index_elements=[TaskRow.id],
                set_={"cancelled": True, "ended_at": func.coalesce(TaskRow.ended_at, func.now())},
            )
        )

    async def add_legs(self, legs: list[dict[str, Any]]) -> None:
        """Legs as `task.submitted` names them; a leg already known is left as it is."""
        await self.session.execute(insert(LegRow).on_conflict_do_nothing(), legs)

    async def add_delivery_report(self, report: dict[str, Any]) -> None:
        """A `leg.delivered` report; the same event twice is one report."""
        await self.session.execute(insert(DeliveryReportRow).values(**report).on_conflict_do_nothing())

    async def task(self, task_id: uuid.UUID) -> TaskRow | None:
        return await self.session.get(TaskRow, task_id)

    async def task_for_update(self, task_id: uuid.UUID) -> TaskRow | None:
        """The task, locked: its reports are checked by one transaction at a time."""
        return (
            await self.session.execute(select(TaskRow).where(TaskRow.id == task_id).with_for_update())
        ).scalar_one_or_none()

    async def legs_for_update(self, task_id: uuid.UUID) -> dict[uuid.UUID, LegRow]:
        rows = await self.session.execute(select(LegRow).where(LegRow.task_id == task_id).with_for_update())
        return {leg.id: leg for leg in rows.scalars()}

    async def unchecked_reports(self, task_id: uuid.UUID) -> list[DeliveryReportRow]:
        """The task's reports not yet checked, in the order the volunteers made them."""
        rows = await self.session.execute(
            select(DeliveryReportRow)
            .where(DeliveryReportRow.task_id == task_id, DeliveryReportRow.checked.is_(False))
            .order_by(DeliveryReportRow.reported_at)
        )
        return list(rows.scalars())

    async def leg(self, leg_id: uuid.UUID) -> LegRow | None:
        return await self.session.get(LegRow, leg_id)

    async def flagged_legs(
        self, *, organisation_id: uuid.UUID | None, limit: int
    ) -> Sequence[Row[uuid.UUID, uuid.UUID, int, uuid.UUID]]:
        """Flagged, unconfirmed legs of tasks still live: (id, task_id, failed_attempts, organisation_id)."""
        query = (
            select(LegRow.id, LegRow.task_id, LegRow.failed_attempts, TaskRow.organisation_id)
            .join(TaskRow, TaskRow.id == LegRow.task_id)
            .where(TaskRow.cancelled.is_(False), LegRow.flagged.is_(True), LegRow.status != "confirmed")
        )
        if organisation_id is not None:
            query = query.where(TaskRow.organisation_id == organisation_id)
        return (await self.session.execute(query.order_by(LegRow.task_id, LegRow.id).limit(limit))).all()

    # --- events that overtook their task --------------------------------------------------------

    async def park(self, event: CloudEvent, *, task_id: uuid.UUID) -> None:
        await self.session.execute(
            insert(ParkedEventRow)
            .values(event_id=event.id, task_id=task_id, time=event.time, payload=event.to_bytes())
            .on_conflict_do_nothing()
        )

    async def take_parked(self, task_id: uuid.UUID) -> list[CloudEvent]:
        """The task's parked events, removed, in the order they happened."""
        parked = (
            await self.session.execute(
                delete(ParkedEventRow)
                .where(ParkedEventRow.task_id == task_id)
                .returning(ParkedEventRow.time, ParkedEventRow.payload)
            )
        ).all()
        return [CloudEvent.from_bytes(row.payload) for row in sorted(parked, key=lambda row: row.time)]

    # --- personal data ---------------------------------------------------------------------------

    async def lock_tasks_to_erase(self, *, retention_s: float, limit: int) -> list[TaskRow]:
        """Up to `limit` tasks ended longer than `retention_s` ago and not yet erased; locked, skipping
        those another replica's job holds."""
        cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s)
        query = (
            select(TaskRow)
            .where(TaskRow.erased_at.is_(None), TaskRow.ended_at < cutoff)
            .order_by(TaskRow.ended_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(query)).scalars())

    async def erase_task(self, task_id: uuid.UUID) -> None:
        """Forget the task's recipients, its parked events and the payloads of its finished webhooks."""
        await self.session.execute(
            update(LegRow).where(LegRow.task_id == task_id).values(recipient_sealed=None)
        )
        await self.session.execute(
            update(RecipientMessageRow)
            .where(RecipientMessageRow.task_id == task_id, RecipientMessageRow.address_sealed.is_not(None))
            .values(address_sealed=None)
        )
        await self.session.execute(delete(ParkedEventRow).where(ParkedEventRow.task_id == task_id))
        finished = select(DeliveryRow.id).where(
            DeliveryRow.task_id == task_id, DeliveryRow.status != "pending"
        )
        await self.session.execute(
            delete(DeliveryAttemptRow).where(DeliveryAttemptRow.delivery_id.in_(finished))
        )
        await self.session.execute(delete(DeliveryRow).where(DeliveryRow.id.in_(finished)))
        await self.session.execute(update(TaskRow).where(TaskRow.id == task_id).values(erased_at=func.now()))

    # --- webhook endpoints and the callback secret ----------------------------------------------

    async def add_endpoint(self, endpoint: WebhookEndpointRow) -> None:
        self.session.add(endpoint)
        await self.session.flush()

    async def endpoints(self, *, organisation_id: uuid.UUID | None) -> list[WebhookEndpointRow]:
        """Endpoints not deleted, oldest first."""
        query = select(WebhookEndpointRow).where(WebhookEndpointRow.deleted_at.is_(None))
        if organisation_id is not None:
            query = query.where(WebhookEndpointRow.organisation_id == organisation_id)
        rows = await self.session.execute(
            query.order_by(WebhookEndpointRow.created_at, WebhookEndpointRow.id)
        )
        return list(rows.scalars())

    async def subscribed_endpoints(self, organisation_id: uuid.UUID) -> list[WebhookEndpointRow]:
        """The organisation's endpoints that still receive deliveries: neither deleted nor disabled."""
        rows = await self.session.execute(
            select(WebhookEndpointRow).where(
                WebhookEndpointRow.organisation_id == organisation_id,
                WebhookEndpointRow.deleted_at.is_(None),
                WebhookEndpointRow.disabled_at.is_(None),
            )
        )
        return list(rows.scalars())

    async def endpoint(
        self, *, organisation_id: uuid.UUID | None, endpoint_id: uuid.UUID
    ) -> WebhookEndpointRow | None:
        query = select(WebhookEndpointRow).where(
            WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.deleted_at.is_(None)
        )
        if organisation_id is not None:
            query = query.where(WebhookEndpointRow.organisation_id == organisation_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def delete_endpoint(
        self, *, organisation_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime
    ) -> bool:
        """Mark the organisation's endpoint deleted; False when it has no such live endpoint."""
        deleted = await self.session.scalar(
            update(WebhookEndpointRow)
            .where(
                WebhookEndpointRow.id == endpoint_id,
                WebhookEndpointRow.organisation_id == organisation_id,
                WebhookEndpointRow.deleted_at.is_(None),
            )
            .values(deleted_at=now)
            .returning(WebhookEndpointRow.id)
        )
        return deleted is not None

    async def disable_endpoint(self, endpoint_id: uuid.UUID, *, reason: str, now: datetime) -> None:
        await self.session.execute(
            update(WebhookEndpointRow)
            .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.disabled_at.is_(None))
            .values(disabled_at=now, disabled_reason=reason)
        )

    async def endpoint_secret(self, endpoint_id: uuid.UUID) -> str | None:
        """The endpoint's sealed signing secret."""
        return await self.session.scalar(
            select(WebhookEndpointRow.secret_sealed).where(WebhookEndpointRow.id == endpoint_id)
        )

    async def callback_secret(self, organisation_id: uuid.UUID) -> str | None:
        """The organisation's sealed callback secret."""
        return await self.session.scalar(
            select(CallbackSecretRow.secret_sealed).where(
                CallbackSecretRow.organisation_id == organisation_id
            )
        )

    async def ensure_callback_secret(self, *, organisation_id: uuid.UUID, secret_sealed: str) -> None:
        """Store `secret_sealed` unless the organisation already has a callback secret."""
        await self.session.execute(
            insert(CallbackSecretRow)
            .values(organisation_id=organisation_id, secret_sealed=secret_sealed)
            .on_conflict_do_nothing()
        )

    async def replace_callback_secret(self, *, organisation_id: uuid.UUID, secret_sealed: str) -> None:
        existing = await self.session.get(CallbackSecretRow, organisation_id, with_for_update=True)
        if existing is None:
            self.session.add(CallbackSecretRow(organisation_id=organisation_id, secret_sealed=secret_sealed))
        else:
            existing.secret_sealed = secret_sealed
        await self.session.flush()

    # --- deliveries and their attempts ----------------------------------------------------------

    async def add_deliveries(self, deliveries: list[dict[str, object]]) -> None:
        """New deliveries; one per event and destination, whatever is replayed."""
        await self.session.execute(insert(DeliveryRow).on_conflict_do_nothing(), deliveries)

    async def deliveries(
        self,
        *,
        organisation_id: uuid.UUID | None,
        endpoint_id: uuid.UUID,
        status: str | None,
        limit: int,
        before: datetime | None,
    ) -> list[DeliveryRow]:
        """An endpoint's deliveries, newest first, at most `limit`."""
        query = select(DeliveryRow).where(DeliveryRow.endpoint_id == endpoint_id)
        if organisation_id is not None:
            query = query.where(DeliveryRow.organisation_id == organisation_id)
        if status:
            query = query.where(DeliveryRow.status == status)
        if before is not None:
            query = query.where(DeliveryRow.created_at < before)
        rows = await self.session.execute(query.order_by(DeliveryRow.created_at.desc()).limit(limit))
        return list(rows.scalars())

    async def attempts(self, delivery_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[DeliveryAttemptRow]]:
        """Each delivery's attempts, first to last."""
        found: dict[uuid.UUID, list[DeliveryAttemptRow]] = {delivery_id: [] for delivery_id in delivery_ids}
        if delivery_ids:
            rows = await self.session.execute(
                select(DeliveryAttemptRow)
                .where(DeliveryAttemptRow.delivery_id.in_(delivery_ids))
                .order_by(DeliveryAttemptRow.attempt)
            )
            for attempt in rows.scalars():
                found[attempt.delivery_id].append(attempt)
        return found

    async def endpoint_delivery_for_update(
        self, *, organisation_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> DeliveryRow | None:
        return (
            await self.session.execute(
                select(DeliveryRow)
                .where(
                    DeliveryRow.id == delivery_id,
                    DeliveryRow.endpoint_id == endpoint_id,
                    DeliveryRow.organisation_id == organisation_id,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()

    async def delivery_for_update(self, delivery_id: uuid.UUID) -> DeliveryRow | None:
        return await self.session.get(DeliveryRow, delivery_id, with_for_update=True)

    async def claim_due_deliveries(self, *, now: datetime, limit: int) -> list[DeliveryRow]:
        """Due deliveries, locked; rows another worker holds are skipped, never waited for."""
        rows = await self.session.execute(
            select(DeliveryRow)
            .where(DeliveryRow.status == "pending", DeliveryRow.next_attempt_at <= now)
            .order_by(DeliveryRow.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    async def end_pending_deliveries(
        self, endpoint_id: uuid.UUID, *, status: str, last_error: str, now: datetime
    ) -> None:
        """Finish the endpoint's pending deliveries as `status` (cancelled, dead)."""
        await self.session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.endpoint_id == endpoint_id, DeliveryRow.status == "pending")
            .values(status=status, finished_at=now, last_error=last_error)
        )

    def add_attempt(self, attempt: DeliveryAttemptRow) -> None:
        self.session.add(attempt)

    # --- messages to recipients -----------------------------------------------------------------

    async def add_recipient_messages(self, messages: list[dict[str, object]]) -> None:
        """Messages owed; one per leg, template and channel, whatever is replayed."""
        await self.session.execute(insert(RecipientMessageRow).on_conflict_do_nothing(), messages)

    async def volunteer_messaged_since(self, volunteer_id: uuid.UUID, *, since: datetime) -> bool:
        """Whether a message to this volunteer was owed since `since`; holds their lock till commit,
        so two offers consumed at once cannot both pass."""
        key = int.from_bytes(volunteer_id.bytes[:8], "big", signed=True)
        await self.session.execute(select(func.pg_advisory_xact_lock(key)))
        found = await self.session.execute(
            select(RecipientMessageRow.id)
            .where(RecipientMessageRow.volunteer_id == volunteer_id, RecipientMessageRow.created_at >= since)
            .limit(1)
        )
        return found.first() is not None

    async def claim_due_messages(self, *, now: datetime, limit: int) -> list[RecipientMessageRow]:
        """Due messages, locked; rows another worker holds are skipped, never waited for."""
        rows = await self.session.execute(
            select(RecipientMessageRow)
            .where(RecipientMessageRow.status == "pending", RecipientMessageRow.next_attempt_at <= now)
            .order_by(RecipientMessageRow.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    async def recipient_message(self, message_id: uuid.UUID) -> RecipientMessageRow | None:
        return await self.session.get(RecipientMessageRow, message_id)

    async def recipient_message_for_update(self, message_id: uuid.UUID) -> RecipientMessageRow | None:
        return await self.session.get(RecipientMessageRow, message_id, with_for_update=True)
