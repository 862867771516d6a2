"""Dispatcher's schema: volunteers, legs as dispatched, offers, declined pairs, outbox, inbox.

The rules that must never break are constraints here, not checks in Python: one live offer per
leg, and a volunteer's active legs never above their limit.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.dispatcher.domain.leg import PRIORITY_ORDER
from shared.consumer import inbox_table
from shared.db import CURRENT_XID, schema_metadata
from shared.outbox import outbox_table


class DispatchBase(DeclarativeBase):
    metadata = schema_metadata("dispatch")


class VolunteerRow(DispatchBase):
    __tablename__ = "volunteers"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    languages: Mapped[list[str]] = mapped_column(ARRAY(Text))
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text))
    vehicle: Mapped[str] = mapped_column(Text)
    capacity_kg: Mapped[float] = mapped_column(Float)
    # Whether the volunteer declared insurance at all, and the last day it covers (in the configured
    # local time zone; None: no end date). Sent out only while declared and not yet lapsed.
    insured: Mapped[bool] = mapped_column(Boolean)
    insured_until: Mapped[date | None] = mapped_column(Date)
    max_active_legs: Mapped[int] = mapped_column(Integer)
    home_lat: Mapped[float | None] = mapped_column(Float)
    home_lon: Mapped[float | None] = mapped_column(Float)
    on_duty: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    duty_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rest_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    location_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active_legs: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    legs_done_today: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Welfare counters (see `domain/welfare.py`): duty in the current shift before `duty_started_at`,
    # when they last went off duty, duty on the local day `duty_day`, and the day legs_done_today counts.
    shift_duty_s: Mapped[float] = mapped_column(Float, server_default=text("0"))
    off_duty_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duty_day: Mapped[date | None] = mapped_column(Date)
    duty_today_s: Mapped[float] = mapped_column(Float, server_default=text("0"))
    legs_day: Mapped[date | None] = mapped_column(Date)
    # An operator withdrew the volunteer (a lost phone, a volunteer who left): their tokens are
    # revoked and they stay off duty for good.
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # pending (signed up with an invite code, not yet vetted), approved, or rejected: only approved
    # volunteers get offers or legs by hand (`eligibility.vetted`).
    vetting_status: Mapped[str] = mapped_column(Text, server_default=text("'approved'"))
    # The volunteer asked for an SMS when a new offer waits (browsers' push services do not reach
    # mainland China), in this language (the app's when they asked).
    sms_on_offer: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    sms_language: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The transaction that last wrote the row, set by a trigger on every update: the matcher's
    # in-memory roster reads only the rows changed since its last read (see `roster.py`).
    changed_xid: Mapped[int] = mapped_column(BigInteger, server_default=CURRENT_XID, index=True)

    __table_args__ = (
        CheckConstraint(
            "active_legs >= 0 AND active_legs <= max_active_legs", name="active_legs_within_limit"
        ),
        CheckConstraint("max_active_legs >= 1", name="max_active_legs_positive"),
        CheckConstraint("vetting_status IN ('pending', 'approved', 'rejected')", name="vetting_status_known"),
        Index("ix_volunteers_listing", "organisation_id", "created_at", "id"),
    )


class RouteRow(DispatchBase):
    """One volunteer's legs in the order they visit the stops (`domain/routing.py`).

    `offered` while its legs' offers are open, `active` once accepted (one per volunteer: legs
    accepted later are inserted into it), `ended` when declined, expired or done. `stops` is the
    ordered list of stops with their ETAs as last planned; a leg's own status says which are done.
    """

    __tablename__ = "routes"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("dispatch.volunteers.id"))
    status: Mapped[str] = mapped_column(Text)
    stops: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("status IN ('offered', 'active', 'ended')", name="route_status_known"),
        Index(
            "uq_routes_one_active_per_volunteer",
            "volunteer_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )


class LegRow(DispatchBase):
    __tablename__ = "legs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    pickup_lat: Mapped[float] = mapped_column(Float)
    pickup_lon: Mapped[float] = mapped_column(Float)
    dropoff_lat: Mapped[float] = mapped_column(Float)
    dropoff_lon: Mapped[float] = mapped_column(Float)
    vehicle: Mapped[str | None] = mapped_column(Text)
    weight_kg: Mapped[float] = mapped_column(Float)
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text))
    languages: Mapped[list[str]] = mapped_column(ARRAY(Text))
    vulnerable: Mapped[bool] = mapped_column(Boolean)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deliver_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Pickup, drop-off (personal data sealed) and items, as the volunteer's app shows them.
    details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    volunteer_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("dispatch.volunteers.id")
    )
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The last matching round that looked at this leg while pending: among legs of equal priority,
    # rounds take the least recently considered first, so a backlog larger than one round rotates
    # instead of starving newer legs.
    considered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The notifier flagged the leg after too many wrong codes: it takes no more delivery reports
    # until an operator resolves it.
    flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the volunteer said they picked it up and delivered it (their app may send that later);
    # `updated_at` is when the dispatcher recorded the change.
    picked_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When its task was cancelled, for a leg then delivered but unconfirmed (it leaves its volunteer's
    # list) or waiting for an operator's decision (returned or handed over, it is cancelled).
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the personal data in `details` was erased (after the retention, or on request).
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The estimates last published for a leg in hand (`domain/eta.py`), when they were made, whether
    # the drop-off estimate is past `deliver_by`, and how many times it has slipped past it.
    pickup_eta: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dropoff_eta: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    eta_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    eta_late: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    eta_slips: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The route the leg is offered in or carried on (`RouteRow`); one column, so never two routes.
    route_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), ForeignKey("dispatch.routes.id"))

    __table_args__ = (
        Index("ix_legs_route", "route_id", postgresql_where=text("route_id IS NOT NULL")),
        Index("ix_legs_dispatchable", "status", postgresql_where=text("status = 'pending'")),
        # The legs not yet delivered, which the escalation sweep reads every round: the table keeps
        # every delivered leg, and this stays the size of the live ones.
        Index(
            "ix_legs_live",
            "status",
            postgresql_where=text("status IN ('pending', 'offered', 'assigned', 'picked_up')"),
        ),
        Index("ix_legs_volunteer", "volunteer_id", postgresql_where=text("volunteer_id IS NOT NULL")),
        Index("ix_legs_organisation", "organisation_id"),
        Index("ix_legs_not_erased", "updated_at", postgresql_where=text("erased_at IS NULL")),
    )


# A leg's place in `PRIORITY_ORDER` (1 first; NULL, sorted last, for a priority not listed), as SQL:
# the round's selection orders by it and the index below is built on the very same expression, so
# the planner reads legs in index order.
PRIORITY_RANK_SQL = (
    "array_position(ARRAY[" + ", ".join(f"'{name}'" for name in PRIORITY_ORDER) + "], priority)"
)

# The order a matching round takes pending legs in (`repository.take_waiting_legs`): priority,
# vulnerable recipients first, then the least recently considered, then the oldest.
Index(
    "ix_legs_pending_priority",
    text(PRIORITY_RANK_SQL),
    LegRow.vulnerable.desc(),
    LegRow.considered_at.asc().nulls_first(),
    LegRow.submitted_at,
    postgresql_where=text("status = 'pending'"),
)


class OfferRow(DispatchBase):
    __tablename__ = "offers"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    leg_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("dispatch.legs.id"))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("dispatch.volunteers.id"))
    status: Mapped[str] = mapped_column(Text)
    distance_m: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The route the offer proposes the leg in (a new one, or one already accepted it would be
    # inserted into), and that route's stops as they would be once accepted.
    route_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    route_stops: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)

    __table_args__ = (
        Index(
            "ix_offers_live_route",
            "route_id",
            postgresql_where=text("status = 'live' AND route_id IS NOT NULL"),
        ),
        Index("uq_offers_one_live_per_leg", "leg_id", unique=True, postgresql_where=text("status = 'live'")),
        Index("ix_offers_live_volunteer", "volunteer_id", postgresql_where=text("status = 'live'")),
        Index("ix_offers_live_expiry", "expires_at", postgresql_where=text("status = 'live'")),
    )


class RejectionRow(DispatchBase):
    """A volunteer declined this leg or let its offer expire: never offer it to them again."""

    __tablename__ = "rejections"

    leg_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EscalationRow(DispatchBase):
    """A task raised `task.escalated`: the primary key makes that happen once, whichever replica sees it."""

    __tablename__ = "escalations"

    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    escalated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LegEscalationRow(DispatchBase):
    """A leg escalated on its own, last time for this reason: the key lets one replica raise it, and
    `escalated_at` keeps the next one for the same leg and reason a repeat interval away."""

    __tablename__ = "leg_escalations"

    leg_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, primary_key=True)
    escalated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


outbox = outbox_table(DispatchBase.metadata)
inbox = inbox_table(DispatchBase.metadata)


class VolunteerRequestRow(DispatchBase):
    """A volunteer's action sent with an Idempotency-Key, and the answer it got, for its retries."""

    __tablename__ = "volunteer_requests"

    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class PhotoRow(DispatchBase):
    """A proof-of-delivery photo a volunteer uploaded for a leg: what was stored, and where.

    The id is random (UUIDv4): the fetch URL carries it and is not guessable. `sha256` is the hash
    of the stored bytes, which `leg.delivered` and `leg.confirmed` carry.
    """

    __tablename__ = "photos"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    leg_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("dispatch.legs.id"), index=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    sha256: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # Which store holds the bytes ("postgres" or "s3"), so a change of store leaves old photos readable
    # where they were written.
    store: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PhotoBlobRow(DispatchBase):
    """The bytes of a photo, when PostgreSQL is the photo store (`photo_store = "postgres"`)."""

    __tablename__ = "photo_blobs"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EnrolmentLinkRow(DispatchBase):
    """A one-time link that turns into a device token for a volunteer's phone; only its hash is kept."""

    __tablename__ = "enrolment_links"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    token_hash: Mapped[str] = mapped_column(Text, unique=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("dispatch.volunteers.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The device token it was exchanged for.
    device_token_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_enrolment_links_volunteer", "volunteer_id"),)


class InviteCodeRow(DispatchBase):
    """An organisation's code volunteers sign up with (pending until vetted); only its hash is kept."""

    __tablename__ = "invite_codes"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    code_hash: Mapped[str] = mapped_column(Text, unique=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class VettingRecordRow(DispatchBase):
    """Who checked a volunteer's identity, insurance and training, what they decided, and when."""

    __tablename__ = "vetting_records"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("dispatch.volunteers.id"))
    # The actor, as the audit trail writes it: `person:<id>`, `token:<id>`...
    checked_by: Mapped[str] = mapped_column(Text)
    identity_checked: Mapped[bool] = mapped_column(Boolean)
    insured_until: Mapped[date | None] = mapped_column(Date)
    training_done: Mapped[bool] = mapped_column(Boolean)
    decision: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("decision IN ('approve', 'reject')", name="vetting_decision_known"),
        Index("ix_vetting_records_volunteer", "volunteer_id", "at"),
    )
