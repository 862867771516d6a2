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
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.adapters.channels import Channel, ChannelError
from services.notifier.adapters.repository import WAKE_CHANNEL, Repository
from services.notifier.adapters.tables import DeliveryAttemptRow, DeliveryRow
from services.notifier.adapters.webhook_sender import PostResult, WebhookSender
from services.notifier.domain.messages import render, template_named
from services.notifier.domain.retries import decide_after_attempt, next_message_attempt
from services.notifier.domain.webhooks import sign
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
            repository = Repository(session)
            now = datetime.now(UTC)
            claimed: list[_Claimed] = []
            for row in await repository.claim_due_deliveries(
                now=now, limit=self._settings.delivery_batch_size
            ):
                row.next_attempt_at = now + self._lease
                if row.endpoint_id is not None:
                    sealed = await repository.endpoint_secret(row.endpoint_id)
                else:
                    sealed = await repository.callback_secret(row.organisation_id)
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
        async with self._sessionmaker() as session, session.begin():
            outcome = await record_attempt(
                Repository(session),
                claimed.id,
                started_at=started_at,
                result=result,
                now=datetime.now(UTC),
                base_s=self._settings.webhook_backoff_base_s,
                max_s=self._settings.webhook_backoff_max_s,
            )
        # Logged once committed, so a line never claims what a crash undid.
        if outcome is not None:
            log.info(outcome[0], **outcome[1])

    # --- recipient messages -------------------------------------------------------------------

    async def _claim_messages(self) -> list[uuid.UUID]:
        async with self._sessionmaker() as session, session.begin():
            now = datetime.now(UTC)
            rows = await Repository(session).claim_due_messages(
                now=now, limit=self._settings.delivery_batch_size
            )
            for row in rows:
                row.next_attempt_at = now + self._lease
            return [row.id for row in rows]

    async def _send_message(self, message_id: uuid.UUID) -> None:
        async with self._sessionmaker() as session:
            repository = Repository(session)
            row = await repository.recipient_message(message_id)
            leg = await repository.leg(row.leg_id) if row is not None else None
        # A message to a volunteer carries their sealed contact; one to a recipient, the leg's.
        if row is None:
            return
        sealed = row.address_sealed or (leg.recipient_sealed if leg is not None else None)
        if sealed is None:
            return
        if row.send_before is not None and datetime.now(UTC) >= row.send_before:
            await self._expire_message(message_id)
            return
        channel = self._channels.get(row.channel)
        address = channel.address_of(unseal(self._settings.data_key, sealed)) if channel else None
        message = render(template_named(row.template), row.language, minutes=row.minutes)
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
            repository = Repository(session)
            current = await repository.recipient_message_for_update(message_id)
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
                current.address_sealed = None  # a volunteer's phone is kept only while it is needed
                await self._notifications.emit(
                    repository, task_id=current.task_id, events=[NotificationSent(**common)]
                )
                outcome = ("recipient.notified", {"template": current.template, **bound})
            elif (
                next_attempt_at := next_message_attempt(
                    attempts=current.attempts,
                    max_attempts=self._settings.notification_max_attempts,
                    now=datetime.now(UTC),
                    base_s=self._settings.webhook_backoff_base_s,
                    max_s=self._settings.webhook_backoff_max_s,
                )
            ) is not None:
                current.next_attempt_at = next_attempt_at
                outcome = (
                    "recipient.retry_scheduled",
                    {"error": error, "attempt": current.attempts, **bound},
                )
            else:
                current.status = "failed"
                current.address_sealed = None
                await self._notifications.emit(
                    repository, task_id=current.task_id, events=[NotificationFailed(**common, error=error)]
                )
                outcome = ("recipient.notification_failed", {"error": error, **bound})
        if outcome is not None:
            log.info(outcome[0], **outcome[1])

    async def _expire_message(self, message_id: uuid.UUID) -> None:
        """Not sent by its `send_before` (the gateway was down, or retries ran past it): it ends
        unsent, the volunteer's sealed phone forgotten with it."""
        async with self._sessionmaker() as session, session.begin():
            current = await Repository(session).recipient_message_for_update(message_id)
            if current is None or current.status != "pending":
                return
            current.status = "expired"
            current.address_sealed = None
            log.info(
                "recipient.message_expired",
                task_id=str(current.task_id),
                leg_id=str(current.leg_id),
                channel=current.channel,
                template=current.template,
                attempts=current.attempts,
            )


class AttemptRecords(Protocol):
    """What recording a delivery attempt reads and changes (`Repository`, or a fake in tests)."""

    async def delivery_for_update(self, delivery_id: uuid.UUID) -> DeliveryRow | None: ...
    def add_attempt(self, attempt: DeliveryAttemptRow) -> None: ...
    async def disable_endpoint(self, endpoint_id: uuid.UUID, *, reason: str, now: datetime) -> None: ...
    async def end_pending_deliveries(
        self, endpoint_id: uuid.UUID, *, status: str, last_error: str, now: datetime
    ) -> None: ...


Outcome = tuple[str, dict[str, object]]


async def record_attempt(
    records: AttemptRecords,
    delivery_id: uuid.UUID,
    *,
    started_at: datetime,
    result: PostResult,
    now: datetime,
    base_s: float,
    max_s: float,
) -> Outcome | None:
    """Record one attempt and apply what `domain.retries.decide_after_attempt` says follows.

    A retry is kept as the row's `next_attempt_at`, which the worker's claim query reads, so it
    survives any restart. Returns the line to log once the transaction commits, if any.
    """
    row = await records.delivery_for_update(delivery_id)
    if row is None:
        return None
    row.attempts += 1
    records.add_attempt(
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
        return None  # deleted or disabled meanwhile: the attempt is recorded, nothing more
    decision = decide_after_attempt(
        status_code=result.status_code,
        retry_after=result.retry_after,
        attempt=row.attempts,
        budget=row.attempt_budget,
        now=now,
        base_s=base_s,
        max_s=max_s,
    )
    row.last_error = result.error
    bound = {"delivery_id": str(row.id), "task_id": str(row.task_id), "attempt": row.attempts}
    if decision.verdict == "succeeded":
        row.status, row.finished_at = "succeeded", now
        return ("webhook.delivered", {"status_code": result.status_code, **bound})
    if decision.verdict == "retry":
        assert decision.next_attempt_at is not None
        row.next_attempt_at = decision.next_attempt_at
        return (
            "webhook.retry_scheduled",
            {"error": result.error, "next_attempt_at": row.next_attempt_at.isoformat(), **bound},
        )
    if decision.verdict == "dead":
        row.status, row.finished_at = "dead", now
        return ("webhook.dead_lettered", {"error": result.error, **bound})
    row.status, row.finished_at = "dead", now
    row.last_error = "endpoint gone (HTTP 410); endpoint disabled"
    if row.endpoint_id is not None:
        reason = "HTTP 410 Gone"
        await records.disable_endpoint(row.endpoint_id, reason=reason, now=now)
        await records.end_pending_deliveries(
            row.endpoint_id, status="dead", last_error=f"endpoint disabled: {reason}", now=now
        )
    return ("webhook.endpoint_gone", bound)
