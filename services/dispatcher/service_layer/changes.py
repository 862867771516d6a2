"""What a transaction changed, to announce when it commits: outbox events, and volunteers to wake."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow, outbox
from shared.events import CloudEvent, EventData, build_event
from shared.outbox import add_events


@dataclass
class Changes:
    """Events to publish and volunteers to wake, collected while a transaction runs."""

    events: list[tuple[str, CloudEvent]] = field(default_factory=list)
    volunteers: set[uuid.UUID] = field(default_factory=set)

    def add(self, data: EventData, *, task_id: uuid.UUID, volunteer_id: uuid.UUID | None = None) -> None:
        self.events.append(build_event(data, source="/dispatcher", subject=task_id))
        if volunteer_id is not None:
            self.volunteers.add(volunteer_id)

    async def flush(self, session: AsyncSession) -> None:
        """Into the caller's transaction: the events to the outbox, and a NOTIFY per volunteer."""
        await add_events(session, outbox, self.events)
        await repository.notify_volunteers(session, self.volunteers)
        self.events, self.volunteers = [], set()


async def audit_leg_action(
    session: AsyncSession, action: str, leg: LegRow, *, volunteer_id: uuid.UUID
) -> None:
    """A volunteer's command on a leg, on the audit trail by its actor (their device token), ids only."""
    await repository.add_audit(
        session,
        action,
        organisation_id=leg.organisation_id,
        task_id=leg.task_id,
        leg_id=leg.id,
        volunteer_id=volunteer_id,
    )
