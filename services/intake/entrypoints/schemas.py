"""Intake's HTTP bodies: what a request may carry (`*In`) and what each answer holds (`*Out`).

They generate the OpenAPI document, every request is parsed through them, and every JSON answer is
validated against its `*Out` model before it is sent.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.intake.domain.model import (
    TASK_CURSOR_PATTERN,
    Kind,
    LegStatus,
    Priority,
    TaskStatus,
    Vehicle,
)
from shared.auth import Role
from shared.fields import (
    WHITESPACE,
    Boolean,
    Integer,
    LanguageCode,
    Number,
    Phone,
)
from shared.http import StorableModel
from shared.outbound import is_http_url
from shared.times import ClientTime

_TEXT = f"[^{WHITESPACE}\\u0000]"  # neither whitespace nor NUL
_EMAIL = f"^[^@{WHITESPACE}\\u0000]{{1,64}}@[^@{WHITESPACE}\\u0000]{{1,255}}\\.[^@{WHITESPACE}\\u0000]{{2,}}$"
# What `_http_url` accepts; `format` tells generated clients it is a URI.
_HTTP_URL = f"^https?://[^{WHITESPACE}\\u0000/?#]+{_TEXT}*$"


class _Strict(StorableModel):
    # StorableModel keeps every string storable in PostgreSQL; intake also trims and refuses extras.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class PickupIn(_Strict):
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_phone: Phone | None = None
    ready_at: ClientTime | None = None


class DropoffIn(_Strict):
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)
    recipient_name: str | None = Field(default=None, max_length=200)
    recipient_phone: Phone | None = None
    recipient_email: str | None = Field(default=None, max_length=320, pattern=_EMAIL)
    language: LanguageCode = Field(default="zh", max_length=12)
    no_contact: Boolean = False
    vulnerable: Boolean = False
    notes: str | None = Field(default=None, max_length=2000)


class ItemIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    quantity: Integer = Field(gt=0, le=1_000_000)
    weight_kg: Number | None = Field(default=None, gt=0, le=50_000)


class RequirementsIn(_Strict):
    vehicle: Vehicle | None = None
    skills: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    languages: list[LanguageCode] = Field(default_factory=list, max_length=10)


class TaskIn(_Strict):
    """The body of `POST /v1/tasks`."""

    kind: Kind
    priority: Priority = "routine"
    pickup: PickupIn
    dropoffs: list[DropoffIn] = Field(min_length=1, max_length=20)
    items: list[ItemIn] = Field(default_factory=list, max_length=100)
    deliver_by: ClientTime | None = None
    requirements: RequirementsIn = Field(default_factory=RequirementsIn)
    notes: str | None = Field(default=None, max_length=2000)
    callback_url: str | None = Field(
        default=None, max_length=2048, json_schema_extra={"format": "uri", "pattern": _HTTP_URL}
    )
    external_ref: str | None = Field(default=None, max_length=200)

    @field_validator("deliver_by")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("deliver_by must be in the future")
        return value

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not (re.match(_HTTP_URL, value) and is_http_url(value)):
            raise ValueError("callback_url must be an http or https URL")
        return value

    def total_weight_kg(self) -> float:
        return sum((item.weight_kg or 0.0) for item in self.items)


class CancelIn(_Strict):
    """The optional body of `POST /v1/tasks/{id}/cancel`."""

    reason: str | None = Field(default=None, max_length=500)


class TaskListQuery(BaseModel):
    """The query of `GET /v1/tasks` (unknown parameters are ignored, as caches and proxies add some)."""

    status: TaskStatus | None = None
    kind: Kind | None = None
    priority: Priority | None = None
    limit: int = Field(default=50, ge=1, le=200)
    # Documented as the cursors now handed out; `ListPosition.decode` still takes the earlier form.
    cursor: str | None = Field(
        default=None, max_length=200, json_schema_extra={"pattern": TASK_CURSOR_PATTERN}
    )


class OrganisationIn(StorableModel):
    name: str = Field(min_length=1, max_length=200)


_SERVICE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class TokenOwnerIn(StorableModel):
    """Who a machine's token acts for: a person (revoked when they are disabled) or a named service.

    Events and the audit trail name the person, or `service:<token id>` for a service's token.
    """

    person_id: uuid.UUID | None = Field(default=None, description="The person who owns the token.")
    service: str | None = Field(
        default=None,
        pattern=_SERVICE_NAME,
        description="Or the service it is for, e.g. `crm-sync` (lower case, digits, `.`, `_`, `-`).",
    )

    @field_validator("service")
    @classmethod
    def _one_owner(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("person_id") is not None:
            raise ValueError("name either a person or a service, not both")
        return value


class RoleTokenIn(TokenOwnerIn):
    role: Literal[Role.OPS, Role.ADMIN] = Field(description="Operator tokens belong to an organisation.")


StaffRole = Literal["admin", "operator", "ops"]


class PersonIn(StorableModel):
    email: str = Field(max_length=320, pattern=_EMAIL)
    role: StaffRole
    organisation_id: uuid.UUID | None = Field(
        default=None,
        description="Required for an admin token of no organisation; an organisation's admin may omit it.",
    )


class RoleChangeIn(StorableModel):
    role: StaffRole


class PeopleQuery(BaseModel):
    organisation_id: uuid.UUID | None = None


class PasswordSetupIn(StorableModel):
    token: str = Field(min_length=1, max_length=200, description="From the one-time link (after `#token=`).")
    password: str = Field(min_length=12, max_length=1024, description="At least 12 characters.")


class SessionIn(StorableModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class AuditQuery(BaseModel):
    """The query of `GET /v1/audit`: every filter given must match; newest entries first."""

    task_id: uuid.UUID | None = None
    volunteer_id: uuid.UUID | None = Field(default=None, description="Entries about or by this volunteer.")
    person_id: uuid.UUID | None = Field(default=None, description="Entries about or by this person.")
    since: ClientTime | None = Field(default=None, description="At or after this time.")
    until: ClientTime | None = Field(default=None, description="Before this time.")
    before: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="`next_before` of the previous page."
    )
    limit: int = Field(default=100, ge=1, le=500)


# --- responses (they generate the OpenAPI document, and every answer is serialised through them) --


class LegCreatedOut(BaseModel):
    id: uuid.UUID
    index: int
    status: LegStatus
    confirmation_code: str = Field(pattern=r"^[0-9]{6}$", description="Shown once; hand it to the recipient.")


class TaskCreatedOut(BaseModel):
    id: uuid.UUID
    status: TaskStatus
    kind: Kind
    priority: Priority
    created_at: datetime
    deliver_by: datetime | None = None
    external_ref: str | None = None
    legs: list[LegCreatedOut]


class VolunteerOut(BaseModel):
    id: uuid.UUID
    name: str | None = None


class LegOut(BaseModel):
    id: uuid.UUID
    index: int
    status: LegStatus
    dropoff: DropoffIn
    volunteer: VolunteerOut | None = None
    transitions: dict[str, datetime]


class TimelineEntryOut(BaseModel):
    type: str
    time: datetime
    leg_id: uuid.UUID | None = None


class TaskOut(BaseModel):
    id: uuid.UUID
    status: TaskStatus
    kind: Kind
    priority: Priority
    created_at: datetime
    updated_at: datetime
    deliver_by: datetime | None = None
    external_ref: str | None = None
    pickup: PickupIn
    items: list[ItemIn]
    transitions: dict[str, datetime]
    legs: list[LegOut]
    timeline: list[TimelineEntryOut]


class LegSummaryOut(BaseModel):
    id: uuid.UUID
    index: int
    status: LegStatus
    volunteer: VolunteerOut | None = None


class TaskSummaryOut(BaseModel):
    id: uuid.UUID
    status: TaskStatus
    kind: Kind
    priority: Priority
    created_at: datetime
    updated_at: datetime
    deliver_by: datetime | None = None
    external_ref: str | None = None
    legs: list[LegSummaryOut]


class TaskPageOut(BaseModel):
    items: list[TaskSummaryOut]
    next_cursor: str | None = Field(
        description="Where this page ended: pass it as `cursor` for the next page, now or later for tasks "
        "that arrive meanwhile. Null only when nothing has been listed yet."
    )
    has_more: bool = Field(description="More tasks are listed after this page right now.")


class OrganisationCreatedOut(BaseModel):
    id: uuid.UUID
    name: str
    operator_token: str = Field(description="Shown this once.")


class TokenCreatedOut(BaseModel):
    id: uuid.UUID
    token: str = Field(description="Shown this once.")


class PersonOut(BaseModel):
    id: uuid.UUID
    organisation_id: uuid.UUID
    email: str
    role: StaffRole
    created_at: datetime
    password_set: bool
    disabled_at: datetime | None


class SetupLinkOut(BaseModel):
    token: str = Field(description="Shown this once; works once, until `expires_at`.")
    url: str = Field(description="The link to hand to the person.")
    expires_at: datetime


class PersonSetupOut(PersonOut):
    setup: SetupLinkOut


class PeopleOut(BaseModel):
    items: list[PersonOut]


class SessionOut(BaseModel):
    person: PersonOut
    csrf_token: str = Field(description="Send it as `X-CSRF-Token` with every POST, PUT, PATCH and DELETE.")
    expires_at: datetime


class ActorOut(BaseModel):
    kind: Literal["person", "volunteer", "service", "token", "cli", "system"]
    id: uuid.UUID | None = Field(description="The person's or volunteer's id, or the token's for a service.")


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    organisation_id: uuid.UUID | None
    actor: ActorOut
    action: str
    task_id: uuid.UUID | None
    leg_id: uuid.UUID | None
    volunteer_id: uuid.UUID | None
    person_id: uuid.UUID | None
    detail: dict[str, Any] = Field(description="Non-personal facts: statuses, roles, counts.")


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_before: int | None


# --- what GET /ops/snapshot and every event of GET /ops/stream carry ----------------------------------


class DistrictOut(BaseModel):
    name: str
    name_zh: str
    x: float
    y: float
    radius: float = Field(description="The district's rough extent, in drawing units.")


class MapOut(BaseModel):
    width: float
    height: float
    units_per_km: float
    districts: list[DistrictOut]


class VolunteerPointOut(BaseModel):
    id: str
    x: float
    y: float
    lat: float
    lon: float
    vehicle: str | None
    name_masked: str | None
    location_at: datetime
    stale: bool = Field(description="No location reported for a while: drawn faded.")


class VolunteersOut(BaseModel):
    on_duty: int
    located: int = Field(description="On duty with a known location inside the map.")
    outside_map: int
    points: list[VolunteerPointOut]


class EscalatedTaskOut(BaseModel):
    id: str
    kind: str
    priority: str
    created_at: datetime
    escalated_at: datetime | None
    legs_waiting: int


class WaitingLegOut(BaseModel):
    id: str
    task_id: str
    index: int
    status: str
    kind: str
    priority: str
    waiting_since: datetime = Field(description="When the task was submitted.")
    status_since: datetime | None = Field(description="When the leg entered its current status.")


class TimingOut(BaseModel):
    name: str
    label: str
    legs: int = Field(description="Legs that completed this timing inside the window.")
    p50_s: float | None
    p90_s: float | None
    p50: str
    p90: str


class OpsSnapshotOut(BaseModel):
    generated_at: datetime
    tasks_total: int
    tasks_by_status: dict[str, int]
    escalated_total: int
    escalated: list[EscalatedTaskOut]
    waiting_total: int
    waiting: list[WaitingLegOut]
    volunteers: VolunteersOut
    timings_window_s: int
    timings: list[TimingOut]
    map: MapOut
