"""Intake's schema: tasks as operators submitted them, legs, the read model, idempotency, outbox, inbox,
and the register of people served and saved places."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.consumer import inbox_table
from shared.db import CURRENT_XID, schema_metadata
from shared.outbox import outbox_table


class IntakeBase(DeclarativeBase):
    metadata = schema_metadata("intake")


class TaskRow(IntakeBase):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    kind: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    # The request as submitted (personal data included: operators of the organisation may read it).
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Time of each task status, e.g. {"submitted": "...", "dispatching": "..."}.
    transitions: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Monotonic sequence for cursor paging that never skips or repeats while tasks arrive.
    seq: Mapped[int] = mapped_column(Integer, server_default=func.nextval("intake.task_seq"), unique=True)
    # The id of the transaction that wrote the task. `seq` values are taken before commit, so a
    # lower one can become visible after a higher one; listing in (xid, seq) order and only below
    # the oldest running transaction (pg_snapshot_xmin) is what makes cursors never skip a task.
    xid: Mapped[int] = mapped_column(BigInteger, server_default=CURRENT_XID)
    # When the personal data in `request` was erased (after the retention, or on request).
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_tasks_not_erased", "updated_at", postgresql_where=text("erased_at IS NULL")),
        Index("ix_tasks_org_seq", "organisation_id", "seq"),
        Index("ix_tasks_org_xid_seq", "organisation_id", "xid", "seq"),
        Index("ix_tasks_xid_seq", "xid", "seq"),
    )


class LegRow(IntakeBase):
    __tablename__ = "legs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("intake.tasks.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    code_hash: Mapped[str] = mapped_column(Text)
    volunteer_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    volunteer_name: Mapped[str | None] = mapped_column(Text)
    transitions: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The dispatcher's latest estimates for the leg in hand (`leg.eta_updated`), and its latest
    # escalation of this leg on its own (`task.escalated` naming it, with the reason).
    pickup_eta: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dropoff_eta: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    eta_late: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    eta_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("task_id", "index"),
        Index("ix_legs_escalated_at", "escalated_at", postgresql_where=text("escalated_at IS NOT NULL")),
        # The dashboard's "legs waiting longest" and its percentiles over recently changed legs.
        Index("ix_legs_waiting", "status", postgresql_where=text("status IN ('pending', 'offered')")),
        Index("ix_legs_updated_at", "updated_at"),
    )


class TimelineRow(IntakeBase):
    __tablename__ = "timeline"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    type: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    leg_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)


class IdempotencyRow(IntakeBase):
    __tablename__ = "idempotency_keys"

    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(Text)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    # The first answer without its confirmation codes, which are derived again on a replay.
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class VolunteerRow(IntakeBase):
    """Intake's own projection of errands.volunteers.v1, for the ops map; never the dispatcher's tables."""

    __tablename__ = "volunteers"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    name_masked: Mapped[str | None] = mapped_column(Text)
    vehicle: Mapped[str | None] = mapped_column(Text)
    on_duty: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The time of the duty event applied last, so an older one arriving late changes nothing.
    duty_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lat: Mapped[float | None] = mapped_column(Double)
    lon: Mapped[float | None] = mapped_column(Double)
    location_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_volunteers_on_duty", "on_duty", postgresql_where=text("on_duty")),)


class RecipientRow(IntakeBase):
    """A person an organisation serves. What identifies them is sealed (`sealed`, AES-GCM under the
    data key); search goes through keyed hashes of normalised values (see domain/register.py)."""

    __tablename__ = "recipients"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    # name, phone, email, address, lat, lon, access_notes, consent_given_by
    sealed: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(Text)
    vulnerable: Mapped[bool] = mapped_column(Boolean)
    no_contact: Mapped[bool] = mapped_column(Boolean)
    consent_given_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    phone_index: Mapped[str | None] = mapped_column(Text)
    email_index: Mapped[str | None] = mapped_column(Text)
    search_index: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    renewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The latest of creation, renewal and use on a task: retention counts from here.
    active_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_recipients_org_id", "organisation_id", "id"),
        Index("ix_recipients_org_phone", "organisation_id", "phone_index"),
        Index("ix_recipients_org_email", "organisation_id", "email_index"),
        Index("ix_recipients_search", "search_index", postgresql_using="gin"),
        Index("ix_recipients_active_at", "active_at"),
    )


class PlaceRow(IntakeBase):
    """A saved place of an organisation (kitchen, depot, checkpoint, hospital): usable as a stop by id."""

    __tablename__ = "places"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    lat: Mapped[float] = mapped_column(Double)
    lon: Mapped[float] = mapped_column(Double)
    address: Mapped[str | None] = mapped_column(Text)
    contact_name: Mapped[str | None] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(Text)
    opening_hours: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_places_org_id", "organisation_id", "id"),)


class GeocodeRow(IntakeBase):
    """Coordinates the geocoder found, by keyed hash of the normalised address (never the address)."""

    __tablename__ = "geocode_cache"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    lat: Mapped[float] = mapped_column(Double)
    lon: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


outbox = outbox_table(IntakeBase.metadata)
inbox = inbox_table(IntakeBase.metadata)


class ScheduleRow(IntakeBase):
    """A recurring delivery: a task template made into a task at each occurrence of an RFC 5545 rule."""

    __tablename__ = "schedules"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    name: Mapped[str] = mapped_column(Text)
    rrule: Mapped[str] = mapped_column(Text)
    # The local wall-clock start the rule counts from, in `time_zone` (naive on purpose).
    dtstart: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    time_zone: Mapped[str] = mapped_column(Text)
    # The task template: a `POST /v1/tasks` body; each occurrence sets its `deliver_by`.
    task: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # active, paused or ended.
    status: Mapped[str] = mapped_column(Text)
    skipped_dates: Mapped[list[date]] = mapped_column(ARRAY(Date))
    # Every occurrence at or before this instant was made into a task, or will never be (paused,
    # skipped, before the schedule existed); a changed schedule only ever affects later ones.
    cursor_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The first occurrence after the cursor (null: none, or not active), which the runner waits for.
    next_occurrence_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_schedules_org_id", "organisation_id", "id"),
        Index("ix_schedules_due", "next_occurrence_at", postgresql_where=text("status = 'active'")),
    )


class ScheduleOccurrenceRow(IntakeBase):
    """One occurrence of a schedule, made into a task once: the key is (schedule, occurrence)."""

    __tablename__ = "schedule_occurrences"

    schedule_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("intake.schedules.id"), primary_key=True
    )
    occurrence_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    # The task made; null with `error` when the template could not make one (an archived place).
    task_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
