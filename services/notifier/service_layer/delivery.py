"""The delivery worker: sends what is due, records every attempt, and schedules the next in the database.

Due rows are claimed with FOR UPDATE SKIP LOCKED and leased (their next attempt pushed past the
call's timeout) before any outward call, so replicas never send the same row at once and a crash
mid-call only means the row comes due again when its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.adapters.channels import Channel, ChannelError
from services.notifier.adapters.tables import (
    CallbackSecretRow,
    DeliveryAttemptRow,
    DeliveryRow,
    LegRow,
    RecipientMessageRow,
    WebhookEndpointRow,
)
from services.notifier.adapters.webhook_sender import PostResult, WebhookSender
from services.notifier.domain.messages import Template, render
from services.notifier.domain.webhooks import backoff_delay, decide_after_attempt, sign
from services.notifier.service_layer.notifications import Notifications
from shared.crypto import unseal
from shared.events import NotificationFailed, NotificationSent
from shared.listen import PgListener
from shared.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: uuid.UUID
    url: str
    payload: bytes
    secret: str | None


class DeliveryWorker:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        sender: WebhookSender,
        channels: Mapping[str, Channel],
        notifications: Notifications,
        listener: PgListener | None = None,
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._sender = sender
        self._channels = channels
        self._notifications = notifications
        self._wake = asyncio.Event()
        self._lease = timedelta(seconds=max(settings.webhook_timeout_s, settings.smtp_timeout_s) + 30)
        if listener is not None:
            from services.notifier.service_layer.notifications import WAKE_CHANNEL

            listener.subscribe(WAKE_CHANNEL, lambda _payload: self._wake.set())

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while await self.run_once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery.worker_failed", error=repr(exc)[:300])
            # LISTEN/NOTIFY wakes us for new work; the poll finds retries that came due.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.delivery_poll_s)

    async def run_once(self) -> int:
        """Send one batch of due webhook deliveries and recipient messages; returns how many were tried."""
        deliveries = await self._claim_deliveries()
        messages = await self._claim_messages()
        await asyncio.gather(
            *(self._deliver(d) for d in deliveries), *(self._send_message(m) for m in messages)
        )
        return len(deliveries) + len(messages)

    # --- webhooks and callbacks ---------------------------------------------------------------

    async def _claim_deliveries(self) -> list[_Claimed]:
        key = self._settings.data_key
        async with self._sessionmaker() as session, session.begin():
            now = datetime.now(UTC)
            rows = (
                (
                    await session.execute(
                        select(DeliveryRow)
                        .where(DeliveryRow.status == "pending", DeliveryRow.next_attempt_at <= now)
                        .order_by(DeliveryRow.next_attempt_at)
                        .limit(self._settings.delivery_batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            claimed: list[_Claimed] = []
            for row in rows:
                row.next_attempt_at = now + self._lease
                if row.endpoint_id is not None:
                    sealed = await session.scalar(
                        select(WebhookEndpointRow.secret_sealed).where(
                            WebhookEndpointRow.id == row.endpoint_id
                        )
                    )
                else:
                    sealed = await session.scalar(
                        select(CallbackSecretRow.secret_sealed).where(
                            CallbackSecretRow.organisation_id == row.organisation_id
                        )
                    )
                secret = unseal(key, sealed)["secret"] if sealed else None
                claimed.append(_Claimed(row.id, row.url, row.payload, secret))
        return claimed

    async def _deliver(self, claimed: _Claimed) -> None:
        started_at = datetime.now(UTC)
        msg_id = str(claimed.id)
        timestamp = int(time.time())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
        if claimed.secret is not None:
            headers["webhook-signature"] = sign(
                claimed.secret, msg_id=msg_id, timestamp=timestamp, body=claimed.payload
            )
        result = await self._sender.post(claimed.url, body=claimed.payload, headers=headers)
        await self._record(claimed.id, started_at, result)

    async def _record(self, delivery_id: uuid.UUID, started_at: datetime, result: PostResult) -> None:
        settings = self._settings
        outcome: tuple[str, dict[str, object]] | None = None
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(DeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                return
            row.attempts += 1
            session.add(
                DeliveryAttemptRow(
                    delivery_id=row.id,
                    attempt=row.attempts,
                    started_at=started_at,
                    status_code=result.status_code,
                    latency_ms=result.latency_ms,
                    error=result.error,
                )
            )
            if row.status != "pending":
                return  # deleted or disabled meanwhile: the attempt is recorded, nothing more
            now = datetime.now(UTC)
            decision = decide_after_attempt(
                status_code=result.status_code,
                retry_after=result.retry_after,
                attempt=row.attempts,
                budget=row.attempt_budget,
                now=now,
                base_s=settings.webhook_backoff_base_s,
                max_s=settings.webhook_backoff_max_s,
            )
            row.last_error = result.error
            bound = {"delivery_id": str(row.id), "task_id": str(row.task_id), "attempt": row.attempts}
            if decision.verdict == "succeeded":
                row.status, row.finished_at = "succeeded", now
                outcome = ("webhook.delivered", {"status_code": result.status_code, **bound})
            elif decision.verdict == "retry":
                assert decision.next_attempt_at is not None
                row.next_attempt_at = decision.next_attempt_at
                outcome = (
                    "webhook.retry_scheduled",
                    {"error": result.error, "next_attempt_at": row.next_attempt_at.isoformat(), **bound},
                )
            elif decision.verdict == "dead":
                row.status, row.finished_at = "dead", now
                outcome = ("webhook.dead_lettered", {"error": result.error, **bound})
            else:
                row.status, row.finished_at = "dead", now
                row.last_error = "endpoint gone (HTTP 410); endpoint disabled"
                if row.endpoint_id is not None:
                    await _disable_endpoint(session, row.endpoint_id, reason="HTTP 410 Gone", now=now)
                outcome = ("webhook.endpoint_gone", bound)
        # Logged once committed, so a line never claims what a crash undid.
        if outcome is not None:
            log.info(outcome[0], **outcome[1])

    # --- recipient messages -------------------------------------------------------------------

    async def _claim_messages(self) -> list[uuid.UUID]:
        async with self._sessionmaker() as session, session.begin():
            now = datetime.now(UTC)
            rows = (
                (
                    await session.execute(
                        select(RecipientMessageRow)
                        .where(
                            RecipientMessageRow.status == "pending",
                            RecipientMessageRow.next_attempt_at <= now,
                        )
                        .order_by(RecipientMessageRow.next_attempt_at)
                        .limit(self._settings.delivery_batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for row in rows:
                row.next_attempt_at = now + self._lease
            return [row.id for row in rows]

    async def _send_message(self, message_id: uuid.UUID) -> None:
        async with self._sessionmaker() as session:
            row = await session.get(RecipientMessageRow, message_id)
            leg = await session.get(LegRow, row.leg_id) if row is not None else None
        if row is None or leg is None or leg.recipient_sealed is None:
            return
        channel = self._channels.get(row.channel)
        address = (
            channel.address_of(unseal(self._settings.data_key, leg.recipient_sealed)) if channel else None
        )
        template: Template = "delivery_arrived" if row.template == "delivery_arrived" else "volunteer_on_way"
        message = render(template, row.language)
        error: str | None = None
        if channel is None or address is None:
            error = f"channel {row.channel} is not available"
        else:
            try:
                await channel.send(to=address, message=message)
            except ChannelError as exc:
                error = str(exc)
        masked = channel.masked(address) if channel is not None and address is not None else None
        outcome: tuple[str, dict[str, object]] | None = None
        async with self._sessionmaker() as session, session.begin():
            current = await session.get(RecipientMessageRow, message_id, with_for_update=True)
            if current is None or current.status != "pending":
                return
            current.attempts += 1
            current.last_error = error
            common = {
                "task_id": current.task_id,
                "leg_id": current.leg_id,
                "channel": current.channel,
                "recipient_masked": masked,
                "template": current.template,
                "language": message.language,
            }
            bound = {
                "task_id": str(current.task_id),
                "leg_id": str(current.leg_id),
                "channel": current.channel,
            }
            if error is None:
                current.status = "sent"
                await self._notifications.emit(
                    session, task_id=current.task_id, events=[NotificationSent(**common)]
                )
                outcome = ("recipient.notified", {"template": current.template, **bound})
            elif current.attempts < self._settings.notification_max_attempts:
                current.next_attempt_at = datetime.now(UTC) + timedelta(
                    seconds=backoff_delay(
                        current.attempts,
                        base_s=self._settings.webhook_backoff_base_s,
                        max_s=self._settings.webhook_backoff_max_s,
                    )
                )
                outcome = (
                    "recipient.retry_scheduled",
                    {"error": error, "attempt": current.attempts, **bound},
                )
            else:
                current.status = "failed"
                await self._notifications.emit(
                    session, task_id=current.task_id, events=[NotificationFailed(**common, error=error)]
                )
                outcome = ("recipient.notification_failed", {"error": error, **bound})
        if outcome is not None:
            log.info(outcome[0], **outcome[1])


async def _disable_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, reason: str, now: datetime
) -> None:
    await session.execute(
        update(WebhookEndpointRow)
        .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason)
    )
    await session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.endpoint_id == endpoint_id, DeliveryRow.status == "pending")
        .values(status="dead", finished_at=now, last_error=f"endpoint disabled: {reason}")
    )
