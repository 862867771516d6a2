"""The audit trail: one row per command, written in the command's own transaction, by ids only.

Every service writes here (`auth.audit`): intake for submissions, cancellations and staff changes,
the dispatcher for its manual assignments and volunteer changes. The actor is the request's
(`shared.events.current_actor`, set by `authorize`) unless one is given. `detail` holds only
non-personal values: statuses, roles, reasons' codes, never names, phones, addresses or free text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.auth import Actor, AuditEntry
from shared.events import current_actor

SYSTEM = Actor("system", None)


def parse_actor(value: str | None) -> Actor:
    """An actor from its `<kind>:<id>` form (an event's `actor`); the system when there is none."""
    if not value:
        return SYSTEM
    kind, _, raw_id = value.partition(":")
    try:
        return Actor(kind, uuid.UUID(raw_id)) if raw_id else Actor(kind, None)
    except ValueError:
        return Actor(kind, None)


def request_actor() -> Actor:
    return parse_actor(current_actor.get())


async def record(
    session: AsyncSession | AsyncConnection,
    action: str,
    *,
    organisation_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    leg_id: uuid.UUID | None = None,
    volunteer_id: uuid.UUID | None = None,
    person_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> None:
    """Add one audit row in the caller's transaction."""
    who = actor or request_actor()
    await session.execute(
        insert(AuditEntry).values(
            organisation_id=organisation_id,
            actor_kind=who.kind,
            actor_id=who.id,
            action=action,
            task_id=task_id,
            leg_id=leg_id,
            volunteer_id=volunteer_id,
            person_id=person_id,
            detail=detail or {},
        )
    )


@dataclass(frozen=True)
class AuditFilter:
    organisation_id: uuid.UUID | None
    task_id: uuid.UUID | None = None
    volunteer_id: uuid.UUID | None = None
    person_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


async def entries(session: AsyncSession, query: AuditFilter) -> list[AuditEntry]:
    """Audit rows, newest first; `person_id` matches rows about the person or given by them."""
    statement = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(query.limit)
    if query.organisation_id is not None:
        statement = statement.where(AuditEntry.organisation_id == query.organisation_id)
    if query.task_id is not None:
        statement = statement.where(AuditEntry.task_id == query.task_id)
    if query.volunteer_id is not None:
        statement = statement.where(
            (AuditEntry.volunteer_id == query.volunteer_id)
            | ((AuditEntry.actor_kind == "volunteer") & (AuditEntry.actor_id == query.volunteer_id))
        )
    if query.person_id is not None:
        statement = statement.where(
            (AuditEntry.person_id == query.person_id)
            | ((AuditEntry.actor_kind == "person") & (AuditEntry.actor_id == query.person_id))
        )
    if query.since is not None:
        statement = statement.where(AuditEntry.at >= query.since)
    if query.until is not None:
        statement = statement.where(AuditEntry.at < query.until)
    if query.before_id is not None:
        statement = statement.where(AuditEntry.id < query.before_id)
    return list((await session.execute(statement)).scalars())
