"""Notifier's schema: the legs it confirms, delivery reports, outbox, inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, Text, func
from sqlalchemy.dialects.postgresql import UUID
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


class DeliveryReportRow(NotifyBase):
    """A `leg.delivered` report, kept until the task it belongs to is known (topics interleave freely)."""

    __tablename__ = "delivery_reports"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    leg_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    code_hash: Mapped[str | None] = mapped_column(Text)
    photo_sha256: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checked: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


outbox = outbox_table(NotifyBase.metadata)
inbox = inbox_table(NotifyBase.metadata)
