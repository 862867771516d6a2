"""Notifier's schema: the legs it confirms, delivery reports, webhooks and their deliveries, outbox, inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.consumer import inbox_table
from shared.db import schema_metadata
from shared.outbox import outbox_table


class NotifyBase(DeclarativeBase):
    metadata = schema_metadata("notify")


class TaskRow(NotifyBase):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    cancelled: Mapped[bool] = mapped_column(Boolean, server_default="false")
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    callback_url: Mapped[str | None] = mapped_column(Text)
    # When the task was completed or cancelled, and when the personal data of its legs was erased.
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_tasks_not_erased", "ended_at", postgresql_where=text("erased_at IS NULL")),)


class ParkedEventRow(NotifyBase):
    """A dispatch event that overtook its task's `task.submitted` (another topic): held until it comes."""

    __tablename__ = "parked_events"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    parked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LegRow(NotifyBase):
    __tablename__ = "legs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    code_hash: Mapped[str] = mapped_column(Text)
    no_contact: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(Text, server_default="open")
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    flagged: Mapped[bool] = mapped_column(Boolean, server_default="false")
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    language: Mapped[str] = mapped_column(Text, server_default="zh")
    # The recipient's name, phone and e-mail exactly as sealed by intake; opened only to send a message.
    recipient_sealed: Mapped[str | None] = mapped_column(Text)


class DeliveryReportRow(NotifyBase):
    """A `leg.delivered` report, kept until the task it belongs to is known (topics interleave freely)."""

    __tablename__ = "delivery_reports"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    leg_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    code_hash: Mapped[str | None] = mapped_column(Text)
    photo_sha256: Mapped[str | None] = mapped_column(Text)
    # What the volunteer said with the delivery ("left with the neighbour"), kept with the report.
    note: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checked: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookEndpointRow(NotifyBase):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    description: Mapped[str | None] = mapped_column(Text)
    # The signing secret, sealed with the data key: it must be recoverable to sign, so it cannot be hashed.
    secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackSecretRow(NotifyBase):
    """The secret that signs an organisation's `callback_url` deliveries."""

    __tablename__ = "callback_secrets"

    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeliveryRow(NotifyBase):
    """One event bound for one URL; its id is the `webhook-id` of every attempt."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("target", "event_id", name="uq_deliveries_target_event"),
        Index("ix_deliveries_due", "next_attempt_at", postgresql_where="status = 'pending'"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    # `endpoint:<id>` or `callback:<task id>`: one delivery per event and destination.
    target: Mapped[str] = mapped_column(Text)
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("notify.webhook_endpoints.id"), index=True
    )
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    url: Mapped[str] = mapped_column(Text)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # Attempts after which the delivery is dead; a manual retry grants one more.
    attempt_budget: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttemptRow(NotifyBase):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("notify.deliveries.id"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class RecipientMessageRow(NotifyBase):
    """A message owed to a leg's recipient on one channel, sent by the delivery worker."""

    __tablename__ = "recipient_messages"
    __table_args__ = (
        # `occasion` tells apart the messages a leg may owe more than once (each slip past the time
        # promised is a "delayed" of its own); '' for the once-only ones.
        UniqueConstraint(
            "leg_id", "template", "channel", "occasion", name="uq_recipient_messages_leg_template_channel"
        ),
        Index("ix_recipient_messages_due", "next_attempt_at", postgresql_where="status = 'pending'"),
        Index(
            "ix_recipient_messages_volunteer",
            "volunteer_id",
            "created_at",
            postgresql_where="volunteer_id IS NOT NULL",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    leg_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    template: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(Text)
    occasion: Mapped[str] = mapped_column(Text, server_default="")
    # For "on the way, about N minutes": N, as estimated when the message was owed.
    minutes: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # A message to a volunteer (a new offer waits): their contact as the dispatcher sealed it, and
    # who they are; None for messages to the leg's recipient.
    address_sealed: Mapped[str | None] = mapped_column(Text)
    volunteer_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Worth sending only until then (an offer's SMS, once the offer has closed, tells of nothing):
    # a message not sent by then ends as "expired", unsent.
    send_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


outbox = outbox_table(NotifyBase.metadata)
inbox = inbox_table(NotifyBase.metadata)
