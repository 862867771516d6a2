"""Operators' webhook endpoints and their deliveries. Every query is scoped by organisation in SQL.

Reads take `organisation_id=None` for callers who read every organisation (ops, admin); writes always
name the organisation.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.repository import Repository
from services.notifier.adapters.tables import DeliveryAttemptRow, DeliveryRow, WebhookEndpointRow
from services.notifier.domain.errors import DeliveryNotFound, UrlNotPublic, WebhookDisabled, WebhookNotFound
from services.notifier.domain.retries import manual_retry_budget
from services.notifier.domain.webhooks import new_secret, redact_url
from shared.crypto import seal

UrlCheck = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as a reader may see it: never its secret except once, when it is created."""

    id: uuid.UUID
    organisation_id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    status: Literal["active", "disabled"]
    disabled_reason: str | None
    created_at: datetime
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery with its attempts, first to last."""

    row: DeliveryRow
    attempts: list[DeliveryAttemptRow]


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[Delivery]
    # The `created_at` to pass back for older deliveries; None on the last page.
    next_cursor: datetime | None


@dataclass(frozen=True, slots=True)
class FlaggedLeg:
    leg_id: uuid.UUID
    task_id: uuid.UUID
    organisation_id: uuid.UUID
    failed_attempts: int


def _endpoint(row: WebhookEndpointRow, *, redact: bool = False, secret: str | None = None) -> Endpoint:
    """With `redact`, no credentials from its URL (for readers outside its organisation)."""
    return Endpoint(
        id=row.id,
        organisation_id=row.organisation_id,
        url=redact_url(row.url) if redact else row.url,
        events=list(row.events),
        description=row.description,
        status="disabled" if row.disabled_at else "active",
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        secret=secret,
    )


async def create_endpoint(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    url: str,
    events: list[str],
    description: str | None,
    data_key: bytes,
    check_url: UrlCheck | None,
) -> Endpoint:
    """Register an endpoint; the answer carries its secret, which is never shown again."""
    if check_url is not None:
        try:
            await check_url(url)
        except Exception as exc:
            raise UrlNotPublic(str(exc)) from exc
    secret = new_secret()
    row = WebhookEndpointRow(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        url=url,
        events=sorted(set(events)),
        description=description,
        secret_sealed=seal(data_key, {"secret": secret}),
        created_at=datetime.now(UTC),
    )
    await Repository(session).add_endpoint(row)
    return _endpoint(row, secret=secret)


async def list_endpoints(*, session: AsyncSession, organisation_id: uuid.UUID | None) -> list[Endpoint]:
    """The organisation's live endpoints, or every organisation's (URLs redacted) when it is None."""
    rows = await Repository(session).endpoints(organisation_id=organisation_id)
    return [_endpoint(row, redact=organisation_id is None) for row in rows]


async def delete_endpoint(
    *, session: AsyncSession, organisation_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    """Stop delivering to an endpoint; its pending deliveries are cancelled, its history kept."""
    repository = Repository(session)
    now = datetime.now(UTC)
    if not await repository.delete_endpoint(
        organisation_id=organisation_id, endpoint_id=endpoint_id, now=now
    ):
        raise WebhookNotFound()
    await repository.end_pending_deliveries(
        endpoint_id, status="cancelled", last_error="endpoint deleted", now=now
    )


async def list_deliveries(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID | None,
    endpoint_id: uuid.UUID,
    status: str | None,
    limit: int,
    before: datetime | None,
) -> DeliveryPage:
    """An endpoint's deliveries, newest first, each with its attempts (any organisation's when None)."""
    repository = Repository(session)
    if await repository.endpoint(organisation_id=organisation_id, endpoint_id=endpoint_id) is None:
        raise WebhookNotFound()
    rows = await repository.deliveries(
        organisation_id=organisation_id,
        endpoint_id=endpoint_id,
        status=status,
        limit=limit + 1,
        before=before,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    attempts = await repository.attempts([row.id for row in rows])
    return DeliveryPage(
        items=[Delivery(row, attempts[row.id]) for row in rows],
        next_cursor=rows[-1].created_at if more else None,
    )


async def retry_delivery(
    *, session: AsyncSession, organisation_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> Delivery:
    """Send a delivery again now, with the same `webhook-id`; one more attempt is granted."""
    repository = Repository(session)
    endpoint = await repository.endpoint(organisation_id=organisation_id, endpoint_id=endpoint_id)
    if endpoint is None:
        raise WebhookNotFound()
    if endpoint.disabled_at is not None:
        raise WebhookDisabled()
    row = await repository.endpoint_delivery_for_update(
        organisation_id=organisation_id, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
    if row is None:
        raise DeliveryNotFound()
    row.status = "pending"
    row.attempt_budget = manual_retry_budget(row.attempts)
    row.next_attempt_at = datetime.now(UTC)
    row.finished_at = None
    await repository.flush()
    await repository.wake_worker()
    return Delivery(row, [])


async def rotate_callback_secret(
    *, session: AsyncSession, organisation_id: uuid.UUID, data_key: bytes
) -> str:
    """A new secret for the organisation's `callback_url` deliveries, shown this once."""
    secret = new_secret()
    await Repository(session).replace_callback_secret(
        organisation_id=organisation_id, secret_sealed=seal(data_key, {"secret": secret})
    )
    return secret


async def flagged_legs(
    *, session: AsyncSession, organisation_id: uuid.UUID | None, limit: int
) -> list[FlaggedLeg]:
    """Legs that failed confirmation too often and are not yet confirmed: an operator should call.

    The organisation's legs, or every organisation's when `organisation_id` is None.
    """
    rows = await Repository(session).flagged_legs(organisation_id=organisation_id, limit=limit)
    return [
        FlaggedLeg(
            leg_id=row.id,
            task_id=row.task_id,
            organisation_id=row.organisation_id,
            failed_attempts=row.failed_attempts,
        )
        for row in rows
    ]
