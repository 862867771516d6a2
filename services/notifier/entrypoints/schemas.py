"""The notifier's HTTP models: what requests may carry (`*In`, queries) and what answers say (`*Out`).

Every JSON answer is built as its `*Out` model, so it is validated against the schema that
`/openapi.json` publishes before it is sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from services.notifier.domain.webhooks import WEBHOOK_EVENT_FILTERS, WEBHOOK_EVENT_TYPES, filter_is_valid
from services.notifier.service_layer.webhooks import Delivery, DeliveryPage, Endpoint, FlaggedLeg
from shared.http import StorableModel
from shared.times import ClientTime


def _isoformat(value: datetime) -> str:
    return value.isoformat()


# A time in an answer, written as the notifier always has: ISO 8601 with a numeric offset (`+00:00`).
Time = Annotated[datetime, PlainSerializer(_isoformat, when_used="json")]


# Checked by `WebhookIn._known_events`, which names the choices in its error; listed here for clients.
EventFilter = Annotated[str, WithJsonSchema({"type": "string", "enum": list(WEBHOOK_EVENT_FILTERS)})]


class WebhookIn(StorableModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: AnyHttpUrl = Field(
        description="Where deliveries are POSTed (http or https).",
        json_schema_extra={"pattern": "^https?://", "maxLength": 2000},
    )
    events: list[EventFilter] = Field(
        min_length=1,
        max_length=len(WEBHOOK_EVENT_TYPES) + 1,
        description="Event types to receive; `*` for all, or a prefix such as `leg.*`.",
    )
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _short_enough(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > 2000:
            raise ValueError("URL longer than 2000 characters")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if not filter_is_valid(e)]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; choose from {sorted(WEBHOOK_EVENT_TYPES)}")
        return value


class WebhookOut(BaseModel):
    id: uuid.UUID
    organisation_id: uuid.UUID
    url: str = Field(
        description="As registered; for ops and admin readers, its origin only (`***` for the rest)."
    )
    events: list[str]
    description: str | None
    status: Literal["active", "disabled"]
    disabled_reason: str | None
    created_at: Time
    secret: str | None = Field(default=None, description="Shown only in the answer to POST.")


class WebhookPageOut(BaseModel):
    items: list[WebhookOut]


class AttemptOut(BaseModel):
    attempt: int
    started_at: Time
    status_code: int | None
    latency_ms: float | None
    error: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt.")
    webhook_id: uuid.UUID = Field(description="The Standard Webhooks message id (the `webhook-id` header).")
    event_id: uuid.UUID
    event_type: str
    task_id: uuid.UUID
    status: Literal["pending", "succeeded", "dead", "cancelled"]
    attempts: int
    next_attempt_at: Time | None
    last_error: str | None
    created_at: Time
    finished_at: Time | None
    attempt_log: list[AttemptOut]


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(description="Pass back as `cursor` for older deliveries.")


class FlaggedLegOut(BaseModel):
    leg_id: uuid.UUID
    task_id: uuid.UUID
    organisation_id: uuid.UUID
    failed_attempts: int


class FlaggedLegsOut(BaseModel):
    items: list[FlaggedLegOut]


class DeliveriesQuery(BaseModel):
    status: Literal["pending", "succeeded", "dead", "cancelled"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: ClientTime | None = None


class LimitQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=200)


class CallbackSecretOut(BaseModel):
    secret: str


def webhook_out(endpoint: Endpoint) -> WebhookOut:
    """The answer for one endpoint; `secret` only when there is one to show (the answer to POST)."""
    shown = {"secret": endpoint.secret} if endpoint.secret is not None else {}
    return WebhookOut(
        id=endpoint.id,
        organisation_id=endpoint.organisation_id,
        url=endpoint.url,
        events=endpoint.events,
        description=endpoint.description,
        status=endpoint.status,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
        **shown,
    )


def delivery_out(delivery: Delivery) -> DeliveryOut:
    row = delivery.row
    return DeliveryOut(
        id=row.id,
        webhook_id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        task_id=row.task_id,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        last_error=row.last_error,
        created_at=row.created_at,
        finished_at=row.finished_at,
        attempt_log=[
            AttemptOut(
                attempt=a.attempt,
                started_at=a.started_at,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
            )
            for a in delivery.attempts
        ],
    )


def delivery_page_out(page: DeliveryPage) -> DeliveryPageOut:
    return DeliveryPageOut(
        items=[delivery_out(d) for d in page.items],
        next_cursor=page.next_cursor.isoformat() if page.next_cursor is not None else None,
    )


def flagged_legs_out(legs: list[FlaggedLeg]) -> FlaggedLegsOut:
    return FlaggedLegsOut(
        items=[
            FlaggedLegOut(
                leg_id=leg.leg_id,
                task_id=leg.task_id,
                organisation_id=leg.organisation_id,
                failed_attempts=leg.failed_attempts,
            )
            for leg in legs
        ]
    )
