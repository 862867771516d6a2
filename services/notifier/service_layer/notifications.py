"""All the notifier tells the outside: events on Kafka, webhook and callback deliveries, recipient messages.

Whatever is owed is written in the caller's transaction; the delivery worker sends it later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.repository import WAKE_CHANNEL, Repository
from services.notifier.domain.messages import Template, message_language, minutes_away
from services.notifier.domain.webhooks import WEBHOOK_EVENT_TYPES, endpoint_wants, new_secret
from shared.crypto import seal, unseal
from shared.events import (
    CloudEvent,
    EventData,
    LegAssigned,
    LegConfirmed,
    LegEtaUpdated,
    LegOffered,
    build_event,
    parse_data,
)

if TYPE_CHECKING:
    from services.notifier.adapters.channels import Channel

__all__ = ["WAKE_CHANNEL", "Notifications"]


class Notifications:
    def __init__(
        self,
        *,
        data_key: bytes,
        webhook_max_attempts: int,
        channels: Mapping[str, Channel],
        offer_sms_min_interval_s: float = 300.0,
    ) -> None:
        self._data_key = data_key
        self._budget = webhook_max_attempts
        self._channels = channels
        self._offer_sms_interval = timedelta(seconds=offer_sms_min_interval_s)

    async def emit(self, repository: Repository, *, task_id: uuid.UUID, events: Sequence[EventData]) -> None:
        """Publish the notifier's own events and deliver them to webhooks, callbacks and recipients."""
        built = [build_event(e, source="/notifier", subject=task_id) for e in events]
        await repository.publish(built)
        await self.fan_out(repository, [event for _, event in built])
        for data in events:
            if isinstance(data, LegConfirmed):
                await self.schedule_message(repository, leg_id=data.leg_id, template="delivery_arrived")

    async def on_consumed_event(self, session: AsyncSession, event: CloudEvent) -> None:
        """Another service's event: forward it to subscribers; tell the recipient a volunteer set off.

        The dispatch and task topics are read in no fixed order between them, so a dispatch event
        can arrive before its task's `task.submitted`: nobody is known to want it yet, so it is
        parked and replayed when the task arrives (`replay_parked`), never dropped.
        """
        await self._forward(Repository(session), event)

    async def on_leg_offered(self, session: AsyncSession, event: CloudEvent) -> None:
        """An offer: an SMS is owed only to a volunteer who asked for one (`sms_sealed` is set)."""
        data = parse_data(event)
        if isinstance(data, LegOffered) and data.sms_sealed and "sms" in self._channels:
            await self._forward(Repository(session), event)

    async def replay_parked(self, repository: Repository, task_id: uuid.UUID) -> None:
        """The task has arrived: handle the events that overtook it, in the order they happened."""
        for event in await repository.take_parked(task_id):
            await self._forward(repository, event)

    async def _forward(self, repository: Repository, event: CloudEvent) -> None:
        data = parse_data(event)
        task_id = getattr(data, "task_id", None)
        if isinstance(task_id, uuid.UUID) and await repository.task(task_id) is None:
            await repository.park(event, task_id=task_id)
            return
        await self.fan_out(repository, [event])
        if isinstance(data, LegAssigned):
            await self.schedule_message(repository, leg_id=data.leg_id, template="volunteer_on_way")
        elif isinstance(data, LegEtaUpdated):
            await self._tell_estimate(repository, data, at=event.time)
        elif isinstance(data, LegOffered):
            await self._tell_volunteer_of_offer(repository, data)

    async def _tell_volunteer_of_offer(self, repository: Repository, data: LegOffered) -> None:
        """One SMS per offer, to a volunteer who asked for it, and none sooner than the interval
        after their last: a round offering several legs, or offers in quick succession, is one SMS.
        None once the offer has closed, and none sent after (`send_before`, the offer's expiry).

        The phone stays sealed as the dispatcher sealed it, opened only by the worker to send.
        """
        channel = self._channels.get("sms")
        if channel is None or not data.sms_sealed:
            return
        now = datetime.now(UTC)
        if data.expires_at <= now:
            return  # read late (the notifier was behind): the offer has closed, nothing to tell
        contact = unseal(self._data_key, data.sms_sealed)
        if not channel.address_of(contact):
            return
        since = now - self._offer_sms_interval
        if await repository.volunteer_messaged_since(data.volunteer_id, since=since):
            return
        await repository.add_recipient_messages(
            [
                {
                    "id": uuid.uuid4(),
                    "task_id": data.task_id,
                    "leg_id": data.leg_id,
                    "template": "offer_waiting",
                    "channel": "sms",
                    "language": message_language(contact.get("language")),
                    "occasion": str(data.offer_id),
                    "address_sealed": data.sms_sealed,
                    "volunteer_id": data.volunteer_id,
                    "send_before": data.expires_at,
                }
            ]
        )
        await repository.wake_worker()

    async def _tell_estimate(self, repository: Repository, data: LegEtaUpdated, *, at: datetime) -> None:
        """ "On the way, about N minutes" once per leg, on the estimate made at pickup (the first with
        the goods in hand; the unique key keeps it once, whatever comes later or is replayed), and
        "delayed" on each estimate that slips past the time promised (each slip its own occasion)."""
        minutes = minutes_away(data.dropoff_eta, at)
        if data.leg_status == "picked_up":
            await self.schedule_message(
                repository, leg_id=data.leg_id, template="eta_on_way", minutes=minutes
            )
        if data.slipped:
            await self.schedule_message(
                repository, leg_id=data.leg_id, template="delayed", minutes=minutes, occasion=str(data.slip)
            )

    async def fan_out(self, repository: Repository, events: Sequence[CloudEvent]) -> None:
        """One delivery per event and subscribed endpoint, plus one to the task's `callback_url`."""
        rows: list[dict[str, object]] = []
        for event in events:
            if event.type not in WEBHOOK_EVENT_TYPES:
                continue
            try:
                task_id = uuid.UUID(event.subject)
            except ValueError:
                continue
            task = await repository.task(task_id)
            if task is None:
                continue  # not ours to forward (the consumed ones are parked until their task comes)
            common = {
                "organisation_id": task.organisation_id,
                "task_id": task_id,
                "event_id": event.id,
                "event_type": event.type,
                "payload": event.to_bytes(),
                "attempt_budget": self._budget,
            }
            for endpoint in await repository.subscribed_endpoints(task.organisation_id):
                if endpoint_wants(endpoint.events, event.type):
                    rows.append(
                        {
                            **common,
                            "id": uuid.uuid4(),
                            "target": f"endpoint:{endpoint.id}",
                            "endpoint_id": endpoint.id,
                            "url": endpoint.url,
                        }
                    )
            if task.callback_url:
                await repository.ensure_callback_secret(
                    organisation_id=task.organisation_id,
                    secret_sealed=seal(self._data_key, {"secret": new_secret()}),
                )
                rows.append(
                    {**common, "id": uuid.uuid4(), "target": f"callback:{task_id}", "url": task.callback_url}
                )
        if rows:
            await repository.add_deliveries(rows)
            await repository.wake_worker()

    async def schedule_message(
        self,
        repository: Repository,
        *,
        leg_id: uuid.UUID,
        template: Template,
        minutes: int | None = None,
        occasion: str = "",
    ) -> None:
        """Owe the leg's recipient `template` on every configured channel that has their address."""
        leg = await repository.leg(leg_id)
        if leg is None or leg.recipient_sealed is None or not self._channels:
            return
        contact = unseal(self._data_key, leg.recipient_sealed)
        rows: list[dict[str, object]] = [
            {
                "id": uuid.uuid4(),
                "task_id": leg.task_id,
                "leg_id": leg.id,
                "template": template,
                "channel": name,
                "language": message_language(leg.language),
                "minutes": minutes,
                "occasion": occasion,
            }
            for name, channel in self._channels.items()
            if channel.address_of(contact)
        ]
        if rows:
            await repository.add_recipient_messages(rows)
            await repository.wake_worker()
