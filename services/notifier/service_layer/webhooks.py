"""Operators' webhook endpoints and their deliveries. Every query is scoped by organisation in SQL.

Reads take `organisation_id=None` for callers who read every organisation (ops, admin); writes always
name the organisation.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.tables import (
    CallbackSecretRow,
    DeliveryAttemptRow,
    DeliveryRow,
    LegRow,
    TaskRow,
    WebhookEndpointRow,
)
from services.notifier.domain.errors import DeliveryNotFound, UrlNotPublic, WebhookDisabled, WebhookNotFound
from services.notifier.domain.webhooks import new_secret, redact_url
from services.notifier.service_layer.notifications import wake_worker
from shared.crypto import seal

UrlCheck = Callable[[str], Awaitable[None]]


def endpoint_view(row: WebhookEndpointRow, *, redact: bool = False) -> dict[str, Any]:
    """An endpoint as readers see it: never its secret; with `redact`, no credentials from its URL."""
    return {
        "id": str(row.id),
        "organisation_id": str(row.organisation_id),
        "url": redact_url(row.url) if redact else row.url,
        "events": list(row.events),
        "description": row.description,
        "status": "disabled" if row.disabled_at else "active",
        "disabled_reason": row.disabled_reason,
        "created_at": row.created_at.isoformat(),
    }


def delivery_view(row: DeliveryRow, attempts: list[DeliveryAttemptRow]) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "webhook_id": str(row.id),
        "event_id": str(row.event_id),
        "event_type": row.event_type,
        "task_id": str(row.task_id),
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "attempt_log": [
            {
                "attempt": a.attempt,
                "started_at": a.started_at.isoformat(),
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "error": a.error,
            }
            for a in attempts
        ],
    }


async def create_endpoint(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    url: str,
    events: list[str],
    description: str | None,
    data_key: bytes,
    check_url: UrlCheck | None,
) -> dict[str, Any]:
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
    session.add(row)
    await session.flush()
    return {**endpoint_view(row), "secret": secret}


async def list_endpoints(*, session: AsyncSession, organisation_id: uuid.UUID | None) -> list[dict[str, Any]]:
    """The organisation's live endpoints, or every organisation's (URLs redacted) when it is None."""
    query = select(WebhookEndpointRow).where(WebhookEndpointRow.deleted_at.is_(None))
    if organisation_id is not None:
        query = query.where(WebhookEndpointRow.organisation_id == organisation_id)
    rows = (
        await session.execute(query.order_by(WebhookEndpointRow.created_at, WebhookEndpointRow.id))
    ).scalars()
    return [endpoint_view(row, redact=organisation_id is None) for row in rows]


async def delete_endpoint(
    *, session: AsyncSession, organisation_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    """Stop delivering to an endpoint; its pending deliveries are cancelled, its history kept."""
    now = datetime.now(UTC)
    deleted = await session.scalar(
        update(WebhookEndpointRow)
        .where(
            WebhookEndpointRow.id == endpoint_id,
            WebhookEndpointRow.organisation_id == organisation_id,
            WebhookEndpointRow.deleted_at.is_(None),
        )
        .values(deleted_at=now)
        .returning(WebhookEndpointRow.id)
    )
    if deleted is None:
        raise WebhookNotFound()
    await session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.endpoint_id == endpoint_id, DeliveryRow.status == "pending")
        .values(status="cancelled", finished_at=now, last_error="endpoint deleted")
    )


async def list_deliveries(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID | None,
    endpoint_id: uuid.UUID,
    status: str | None,
    limit: int,
    before: datetime | None,
) -> dict[str, Any]:
    """An endpoint's deliveries, newest first, each with its attempts (any organisation's when None)."""
    await _endpoint(session, organisation_id=organisation_id, endpoint_id=endpoint_id)
    query = select(DeliveryRow).where(DeliveryRow.endpoint_id == endpoint_id)
    if organisation_id is not None:
        query = query.where(DeliveryRow.organisation_id == organisation_id)
    if status:
        query = query.where(DeliveryRow.status == status)
    if before is not None:
        query = query.where(DeliveryRow.created_at < before)
    rows = list(
        (await session.execute(query.order_by(DeliveryRow.created_at.desc()).limit(limit + 1))).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    attempts: dict[uuid.UUID, list[DeliveryAttemptRow]] = {row.id: [] for row in rows}
    if rows:
        for attempt in (
            await session.execute(
                select(DeliveryAttemptRow)
                .where(DeliveryAttemptRow.delivery_id.in_(list(attempts)))
                .order_by(DeliveryAttemptRow.attempt)
            )
        ).scalars():
            attempts[attempt.delivery_id].append(attempt)
    return {
        "items": [delivery_view(row, attempts[row.id]) for row in rows],
        "next_cursor": rows[-1].created_at.isoformat() if more else None,
    }


async def retry_delivery(
    *, session: AsyncSession, organisation_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> dict[str, Any]:
    """Send a delivery again now, with the same `webhook-id`; one more attempt is granted."""
    endpoint = await _endpoint(session, organisation_id=organisation_id, endpoint_id=endpoint_id)
    if endpoint.disabled_at is not None:
        raise WebhookDisabled()
    row = (
        await session.execute(
            select(DeliveryRow)
            .where(
                DeliveryRow.id == delivery_id,
                DeliveryRow.endpoint_id == endpoint_id,
                DeliveryRow.organisation_id == organisation_id,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise DeliveryNotFound()
    row.status = "pending"
    row.attempt_budget = row.attempts + 1
    row.next_attempt_at = datetime.now(UTC)
    row.finished_at = None
    await session.flush()
    await wake_worker(session)
    return delivery_view(row, [])


async def rotate_callback_secret(
    *, session: AsyncSession, organisation_id: uuid.UUID, data_key: bytes
) -> str:
    """A new secret for the organisation's `callback_url` deliveries, shown this once."""
    secret = new_secret()
    existing = await session.get(CallbackSecretRow, organisation_id, with_for_update=True)
    if existing is None:
        session.add(
            CallbackSecretRow(
                organisation_id=organisation_id, secret_sealed=seal(data_key, {"secret": secret})
            )
        )
    else:
        existing.secret_sealed = seal(data_key, {"secret": secret})
    await session.flush()
    return secret


async def _endpoint(
    session: AsyncSession, *, organisation_id: uuid.UUID | None, endpoint_id: uuid.UUID
) -> WebhookEndpointRow:
    query = select(WebhookEndpointRow).where(
        WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.deleted_at.is_(None)
    )
    if organisation_id is not None:
        query = query.where(WebhookEndpointRow.organisation_id == organisation_id)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise WebhookNotFound()
    return row


async def flagged_legs(
    *, session: AsyncSession, organisation_id: uuid.UUID | None, limit: int
) -> list[dict[str, Any]]:
    """Legs that failed confirmation too often and are not yet confirmed: an operator should call.

    The organisation's legs, or every organisation's when `organisation_id` is None.
    """
    query = (
        select(LegRow.id, LegRow.task_id, LegRow.failed_attempts, TaskRow.organisation_id)
        .join(TaskRow, TaskRow.id == LegRow.task_id)
        .where(
            TaskRow.cancelled.is_(False),
            LegRow.flagged.is_(True),
            LegRow.status != "confirmed",
        )
    )
    if organisation_id is not None:
        query = query.where(TaskRow.organisation_id == organisation_id)
    rows = (await session.execute(query.order_by(LegRow.task_id, LegRow.id).limit(limit))).all()
    return [
        {
            "leg_id": str(row.id),
            "task_id": str(row.task_id),
            "organisation_id": str(row.organisation_id),
            "failed_attempts": row.failed_attempts,
        }
        for row in rows
    ]
