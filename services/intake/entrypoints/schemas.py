"""Intake's HTTP bodies: what a request may carry (`*In`) and what each answer holds (`*Out`).

They generate the OpenAPI document, every request is parsed through them, and every JSON answer is
validated against its `*Out` model before it is sent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from datetime import date as date_type
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

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
    LANGUAGE_PATTERN,
    WHITESPACE,
    Boolean,
    Integer,
    LanguageCode,
    Number,
    Phone,
    describe_storable_text,
)
from shared.http import StorableModel
from shared.outbound import is_http_url
from shared.times import EARLIEST, LATEST, ClientTime

_TEXT = f"[^{WHITESPACE}\\u0000]"  # neither whitespace nor NUL
_EMAIL = f"^[^@{WHITESPACE}\\u0000]{{1,64}}@[^@{WHITESPACE}\\u0000]{{1,255}}\\.[^@{WHITESPACE}\\u0000]{{2,}}$"
# What `_http_url` accepts; `format` tells generated clients it is a URI.
_HTTP_URL = f"^https?://[^{WHITESPACE}\\u0000/?#]+{_TEXT}*$"


class _Strict(StorableModel):
    # StorableModel keeps every string storable in PostgreSQL; intake also trims and refuses extras.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


# Fields that may be left out but, when given, are never null: their schema lists no null, and a
# validator refuses one (`_refuse_null`). Nullable in Python, so an error names the field itself.
Latitude = Annotated[
    float | None,
    Strict(),
    Field(ge=-90, le=90),
    WithJsonSchema({"type": "number", "minimum": -90, "maximum": 90}),
]
Longitude = Annotated[
    float | None,
    Strict(),
    Field(ge=-180, le=180),
    WithJsonSchema({"type": "number", "minimum": -180, "maximum": 180}),
]
RecordId = Annotated[uuid.UUID | None, WithJsonSchema({"type": "string", "format": "uuid"})]
Flag = Annotated[bool | None, Strict(), WithJsonSchema({"type": "boolean"})]


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null; leave the field out instead")
    return value


def _where_from(*sources: str) -> Callable[[dict[str, Any], type[BaseModel]], None]:
    """The JSON Schema of a stop: lat and lon together, or neither and one of `sources` instead."""

    def describe(schema: dict[str, Any], model: type[BaseModel]) -> None:
        describe_storable_text(schema, model)
        without_coordinates = {"lat": False, "lon": False}
        schema["anyOf"] = [
            {"required": ["lat", "lon"]},
            *(
                {"required": [source], "properties": {**without_coordinates, source: {"type": "string"}}}
                for source in sources
            ),
        ]

    return describe


class PickupIn(_Strict):
    """Where the errand starts: lat and lon, or a saved place (`place_id`), or an address to look up."""

    model_config = ConfigDict(json_schema_extra=_where_from("place_id", "address"))

    lat: Latitude = None
    lon: Longitude = None
    place_id: RecordId = Field(
        default=None, description="A saved place: its location, address and contact fill what is left out."
    )
    address: str | None = Field(default=None, max_length=500)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_phone: Phone | None = None
    ready_at: ClientTime | None = None

    _not_null = field_validator("lat", "lon", "place_id", mode="before")(_refuse_null)

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        _check_where(self, "place_id", "address")
        return self


class DropoffIn(_Strict):
    """Where one leg ends: lat and lon, or a recipient of the register, a saved place, or an address."""

    model_config = ConfigDict(json_schema_extra=_where_from("recipient_id", "place_id", "address"))

    lat: Latitude = None
    lon: Longitude = None
    recipient_id: RecordId = Field(
        default=None,
        description="A recipient of the register: their details fill every field left out; the task "
        "keeps a copy, so later edits of the record do not change it.",
    )
    place_id: RecordId = Field(
        default=None,
        description="A saved place: its location and address (and contact) fill what is left out.",
    )
    address: str | None = Field(default=None, max_length=500)
    recipient_name: str | None = Field(default=None, max_length=200)
    recipient_phone: Phone | None = None
    recipient_email: str | None = Field(default=None, max_length=320, pattern=_EMAIL)
    language: LanguageCode = Field(default="zh", max_length=12)
    no_contact: Boolean = False
    vulnerable: Boolean = False
    notes: str | None = Field(default=None, max_length=2000)

    _not_null = field_validator("lat", "lon", "recipient_id", "place_id", mode="before")(_refuse_null)

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        _check_where(self, "recipient_id", "place_id", "address")
        return self

    def given(self) -> dict[str, Any]:
        """The fields the request set, defaults left out, so a recipient's own values can fill them."""
        return self.model_dump(include=self.model_fields_set, exclude_none=True)


def _check_where(stop: Any, *sources: str) -> None:
    has_lat, has_lon = stop.lat is not None, stop.lon is not None
    if has_lat != has_lon:
        raise ValueError("lat and lon go together: give both or neither")
    if not has_lat and all(getattr(stop, source) is None for source in sources):
        raise ValueError(f"give lat and lon, or {' or '.join(sources)}")


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


class ErasureIn(_Strict):
    """The body of `POST /v1/erasures`: the person, by phone or by e-mail (one of the two)."""

    phone: Phone | None = Field(default=None, description="Compared by its digits alone.")
    email: str | None = Field(
        default=None, max_length=320, pattern=_EMAIL, description="Compared case-blind."
    )
    organisation_id: uuid.UUID | None = Field(
        default=None, description="Only this organisation's tasks; every organisation's when left out."
    )

    @field_validator("phone")
    @classmethod
    def _enough_digits(cls, value: str | None) -> str | None:
        if value is not None and sum(ch.isdigit() for ch in value) < 5:
            raise ValueError("phone must have at least 5 digits")
        return value

    @model_validator(mode="after")
    def _one_person(self) -> ErasureIn:
        if (self.phone is None) == (self.email is None):
            raise ValueError("give either phone or email")
        return self


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
    limit: int = Field(default=100, ge=1, le=200)


class ExportQuery(BaseModel):
    """The query of `GET /v1/exports/tasks.csv`: tasks created at or after `from` and before `to`
    (`to` at or before `from` is an empty range: the header alone)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: ClientTime = Field(alias="from", description="Tasks created at or after this time.")
    to: ClientTime = Field(description="Tasks created before this time.")


def _a_day_within_the_years_served(value: date_type) -> date_type:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError("date must be in the years 2000 to 2100")
    return value


# A report's day: its midnights, in any zone, stay within the years the services and the database serve
# (year 1's midnight east of UTC is year 0 in UTC; 9999-12-31 has no next midnight).
ReportDay = Annotated[
    date_type,
    AfterValidator(_a_day_within_the_years_served),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "formatMinimum": "2000-01-01",
            "formatMaximum": "2100-12-31",
            "description": "The local day whose tasks are reported, YYYY-MM-DD, in the years 2000 to 2100.",
        }
    ),
]


class DailyReportQuery(BaseModel):
    """The query of `GET /v1/reports/daily`: a calendar day in the settings' local time zone."""

    date: ReportDay
    lang: Literal["zh", "en", "ko", "ja"] | None = Field(
        default=None,
        description="The page's language, remembered in the `lang` cookie; otherwise the cookie's, "
        "else the best of Accept-Language, else Chinese.",
    )


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


class LegEscalationOut(BaseModel):
    reason: str = Field(
        description="`waited_too_long_<status>` (pending, offered, assigned, picked_up), "
        "or `will_miss_deliver_by`."
    )
    at: datetime


class PickupOut(BaseModel):
    """A task's pickup as submitted, with what a saved place filled in (a copy, kept with the task)."""

    lat: float
    lon: float
    place_id: uuid.UUID | None = None
    address: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    ready_at: datetime | None = None


class DropoffOut(BaseModel):
    """A leg's drop-off as submitted, with what the register filled in (a copy, kept with the task)."""

    lat: float
    lon: float
    recipient_id: uuid.UUID | None = None
    place_id: uuid.UUID | None = None
    address: str | None = None
    recipient_name: str | None = None
    recipient_phone: str | None = None
    recipient_email: str | None = None
    language: str = "zh"
    no_contact: bool = False
    vulnerable: bool = False
    notes: str | None = None


class PhotoLinkOut(BaseModel):
    id: uuid.UUID
    url: str = Field(description="The dispatcher's path of the photo (GET with an operator's token).")


class LegOut(BaseModel):
    id: uuid.UUID
    index: int
    status: LegStatus
    dropoff: DropoffOut
    volunteer: VolunteerOut | None = None
    transitions: dict[str, datetime]
    pickup_eta: datetime | None = Field(
        default=None,
        description="Assigned: when the volunteer should reach the pickup, from their last location.",
    )
    dropoff_eta: datetime | None = Field(
        default=None,
        description="Assigned or picked up: when the volunteer should reach the drop-off; refreshed as "
        "their location reports arrive.",
    )
    eta_late: bool = Field(default=False, description="The drop-off estimate is past the task's deliver_by.")
    escalation: LegEscalationOut | None = Field(
        default=None, description="The latest time this leg was escalated on its own, and why."
    )
    photos: list[PhotoLinkOut] = Field(
        default_factory=list, description="Proof-of-delivery photos the leg's delivery reports named."
    )


class TimelineEntryOut(BaseModel):
    type: str
    time: datetime
    leg_id: uuid.UUID | None = None
    reason: str | None = Field(default=None, description="Why, for `task.escalated`.")
    actor: str | None = Field(
        default=None,
        description="Who caused it: `person:<id>` (staff), `volunteer:<id>` or `token:<id>`; null for the "
        "system (the matcher, timers) and for events recorded before actors were kept.",
    )


class TaskOut(BaseModel):
    id: uuid.UUID
    status: TaskStatus
    kind: Kind
    priority: Priority
    created_at: datetime
    updated_at: datetime
    deliver_by: datetime | None = None
    external_ref: str | None = None
    pickup: PickupOut
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


class ErasureOut(BaseModel):
    """What was erased: intake's copy at once; the dispatcher's and the notifier's follow its event."""

    tasks: int = Field(description="Tasks that named the person.")
    legs: int = Field(description="Their drop-offs.")
    fields: int = Field(description="Names, phones, e-mails, addresses and notes emptied.")
    recipients: int = Field(description="Records of the register of people served, deleted.")


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


class EscalatedLegOut(BaseModel):
    id: str
    task_id: str
    index: int
    status: str
    priority: str
    reason: str = Field(description="`waited_too_long_<status>` or `will_miss_deliver_by`.")
    escalated_at: datetime
    dropoff_eta: datetime | None
    deliver_by: datetime | None


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
    escalated_legs_total: int = 0
    escalated_legs: list[EscalatedLegOut] = Field(
        default_factory=list, description="Legs escalated on their own (late or stuck), latest first."
    )
    waiting_total: int
    waiting: list[WaitingLegOut]
    volunteers: VolunteersOut
    timings_window_s: int
    timings: list[TimingOut]
    map: MapOut


# --- the register of people served, and saved places --------------------------------------------------


def _coordinates_together(schema: dict[str, Any], model: type[BaseModel]) -> None:
    describe_storable_text(schema, model)
    schema["anyOf"] = [{"required": ["lat", "lon"]}, {"properties": {"lat": False, "lon": False}}]


def _check_coordinates_together(record: Any) -> None:
    if (record.lat is None) != (record.lon is None):
        raise ValueError("lat and lon go together: give both or neither")


class RecipientIn(_Strict):
    """The body of `POST /v1/recipients`: a person the organisation serves.

    An address without lat and lon is looked up by the geocoder (422 when none is configured).
    """

    model_config = ConfigDict(json_schema_extra=_coordinates_together)

    name: str = Field(min_length=1, max_length=200)
    phone: Phone | None = None
    email: str | None = Field(default=None, max_length=320, pattern=_EMAIL)
    language: LanguageCode = Field(default="zh", max_length=12)
    address: str | None = Field(default=None, max_length=500)
    lat: Latitude = None
    lon: Longitude = None
    vulnerable: Boolean = False
    no_contact: Boolean = False
    access_notes: str | None = Field(
        default=None,
        max_length=1000,
        description="Floor, gate code, dog: what a volunteer needs at the door.",
    )
    consent_given_at: ClientTime | None = None
    consent_given_by: str | None = Field(
        default=None,
        max_length=200,
        description="Who gave consent to be registered (the person, a relative).",
    )

    _not_null = field_validator("lat", "lon", mode="before")(_refuse_null)

    @model_validator(mode="after")
    def _together(self) -> Self:
        _check_coordinates_together(self)
        return self


class RecipientPatchIn(_Strict):
    """The body of `PATCH /v1/recipients/{id}`: the fields given replace the record's; null clears an
    optional one. A new address without lat and lon is looked up again."""

    model_config = ConfigDict(json_schema_extra=_coordinates_together)

    name: Annotated[str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200})] = Field(
        default=None, min_length=1, max_length=200
    )
    phone: Phone | None = None
    email: str | None = Field(default=None, max_length=320, pattern=_EMAIL)
    language: Annotated[
        str | None, WithJsonSchema({"type": "string", "pattern": LANGUAGE_PATTERN, "maxLength": 12})
    ] = Field(default=None, pattern=LANGUAGE_PATTERN, max_length=12)
    address: str | None = Field(default=None, max_length=500)
    lat: Latitude = None
    lon: Longitude = None
    vulnerable: Flag = None
    no_contact: Flag = None
    access_notes: str | None = Field(default=None, max_length=1000)
    consent_given_at: ClientTime | None = None
    consent_given_by: str | None = Field(default=None, max_length=200)

    _not_null = field_validator("name", "language", "lat", "lon", "vulnerable", "no_contact", mode="before")(
        _refuse_null
    )

    @model_validator(mode="after")
    def _together(self) -> Self:
        _check_coordinates_together(self)
        return self


class RecipientListQuery(BaseModel):
    """The query of `GET /v1/recipients`."""

    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A phone number or e-mail (exact), or words of a name or address (each word a prefix).",
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: uuid.UUID | None = Field(default=None, description="`next_cursor` of the page before.")


PlaceKind = Literal["kitchen", "depot", "checkpoint", "hospital", "shelter", "other"]


class PlaceIn(_Strict):
    """The body of `POST /v1/places`: a named place usable as a pickup or drop-off by id."""

    model_config = ConfigDict(json_schema_extra=_where_from("address"))

    name: str = Field(min_length=1, max_length=200)
    kind: PlaceKind = "other"
    lat: Latitude = None
    lon: Longitude = None
    address: str | None = Field(default=None, max_length=500)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_phone: Phone | None = None
    opening_hours: str | None = Field(
        default=None, max_length=500, description='Free text, e.g. OpenStreetMap style "Mo-Fr 08:00-18:00".'
    )
    notes: str | None = Field(default=None, max_length=2000)

    _not_null = field_validator("lat", "lon", mode="before")(_refuse_null)

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        _check_where(self, "address")
        return self


class PlacePatchIn(_Strict):
    """The body of `PATCH /v1/places/{id}`: the fields given replace the place's; null clears an
    optional one."""

    model_config = ConfigDict(json_schema_extra=_coordinates_together)

    name: Annotated[str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200})] = Field(
        default=None, min_length=1, max_length=200
    )
    kind: Annotated[
        PlaceKind | None, WithJsonSchema({"type": "string", "enum": list(get_args(PlaceKind))})
    ] = None
    lat: Latitude = None
    lon: Longitude = None
    address: str | None = Field(default=None, max_length=500)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_phone: Phone | None = None
    opening_hours: str | None = Field(default=None, max_length=500)
    notes: str | None = Field(default=None, max_length=2000)

    _not_null = field_validator("name", "kind", "lat", "lon", mode="before")(_refuse_null)

    @model_validator(mode="after")
    def _together(self) -> Self:
        _check_coordinates_together(self)
        return self


class PlaceListQuery(BaseModel):
    """The query of `GET /v1/places`."""

    archived: bool = Field(default=False, description="Include archived places.")
    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Words of the place's name, each found anywhere in it (case-insensitive).",
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: uuid.UUID | None = Field(default=None, description="`next_cursor` of the page before.")


class RecipientOut(BaseModel):
    """A recipient in full: only on the record itself, to the operators of their organisation."""

    id: uuid.UUID
    name: str
    phone: str | None = None
    email: str | None = None
    language: str
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    vulnerable: bool
    no_contact: bool
    access_notes: str | None = None
    consent_given_at: datetime | None = None
    consent_given_by: str | None = None
    created_at: datetime
    updated_at: datetime
    renewed_at: datetime | None = None
    last_used_at: datetime | None = None
    erase_after: datetime = Field(description="Erased then unless used on a task or renewed before.")


class RecipientSummaryOut(BaseModel):
    """A recipient in a list: identifying details masked."""

    id: uuid.UUID
    name_masked: str
    phone_masked: str | None = None
    email_masked: str | None = None
    address_masked: str | None = None
    has_location: bool
    language: str
    vulnerable: bool
    no_contact: bool
    last_used_at: datetime | None = None
    erase_after: datetime


class RecipientPageOut(BaseModel):
    items: list[RecipientSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")
    has_more: bool


class PlaceOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: PlaceKind
    lat: float
    lon: float
    address: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    opening_hours: str | None = None
    notes: str | None = None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = Field(default=None, description="Archived places serve no new task.")


class PlacePageOut(BaseModel):
    items: list[PlaceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")
    has_more: bool


# --- recurring deliveries ------------------------------------------------------------------------

LOCAL_DATE_TIME_PATTERN = (
    r"^20\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"
)
NOT_A_LOCAL_TIME = "not a local date-time in the years 2000 to 2099, without an offset"


def _local_date_time(value: Any) -> Any:
    """A wall-clock time as "2026-12-07T11:30": the calendar checked here, so a 30 February is
    refused in the same words as any other value the pattern lets through."""
    if isinstance(value, str):
        if not re.match(LOCAL_DATE_TIME_PATTERN, value):
            raise ValueError(NOT_A_LOCAL_TIME)
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(NOT_A_LOCAL_TIME) from None
    if isinstance(value, datetime) and value.tzinfo is None and 2000 <= value.year <= 2099:
        return value
    raise ValueError(NOT_A_LOCAL_TIME)


# A wall-clock time in the schedule's zone, without an offset: "2026-12-07T11:30".
LocalDateTime = Annotated[
    datetime,
    BeforeValidator(_local_date_time),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": LOCAL_DATE_TIME_PATTERN,
            "description": "A local date-time in `time_zone`, without an offset (years 2000 to 2099).",
        }
    ),
]
RULE_DESCRIPTION = (
    "An RFC 5545 recurrence rule (`RRULE:` optional), e.g. `FREQ=WEEKLY;BYDAY=MO,TH`; UNTIL is a "
    "local time without `Z`. Occurrences closer than 10 minutes are refused."
)
SCHEDULE_STATUSES = ("active", "paused", "ended")
ScheduleStatus = Literal["active", "paused", "ended"]


class ScheduleIn(_Strict):
    """The body of `POST /v1/schedules` and `POST /v1/schedules/preview`."""

    name: str = Field(min_length=1, max_length=200)
    rrule: str = Field(min_length=1, max_length=500, description=RULE_DESCRIPTION)
    dtstart: LocalDateTime = Field(
        description="The local start the rule counts from (its first time of day)."
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA zone of the rule; the service's local zone when absent.",
    )
    task: TaskIn = Field(
        description="The task each occurrence submits; `deliver_by` is set to the occurrence."
    )


class SchedulePatchIn(_Strict):
    """The body of `PATCH /v1/schedules/{id}`: the fields given (not null) replace the schedule's, for
    occurrences not made into tasks yet."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    rrule: str | None = Field(default=None, min_length=1, max_length=500, description=RULE_DESCRIPTION)
    dtstart: LocalDateTime | None = None
    time_zone: str | None = Field(default=None, max_length=64)
    task: TaskIn | None = None


class ScheduleSkipIn(_Strict):
    """The body of `POST /v1/schedules/{id}/skip`: a local date whose occurrences are not made."""

    date: date_type


class ScheduleListQuery(BaseModel):
    """The query of `GET /v1/schedules`."""

    limit: int = Field(default=50, ge=1, le=200)
    cursor: uuid.UUID | None = Field(default=None, description="`next_cursor` of the page before.")


class OccurrenceOut(BaseModel):
    at: datetime = Field(description="The occurrence in UTC: the task's `deliver_by`.")
    local: datetime = Field(description="The same instant in the schedule's zone, with its offset.")


class MadeOccurrenceOut(BaseModel):
    at: datetime
    task_id: uuid.UUID | None = Field(description="The task made; null when it could not be (see error).")
    error: str | None = None


class SchedulePreviewOut(BaseModel):
    time_zone: str
    occurrences: list[OccurrenceOut]


class ScheduleOut(BaseModel):
    id: uuid.UUID
    name: str
    rrule: str
    dtstart: str = Field(description="The local start, without an offset.")
    time_zone: str
    status: ScheduleStatus
    skipped_dates: list[date_type]
    task: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    next_occurrences: list[OccurrenceOut] = Field(description="The next occurrences not made yet.")
    made: list[MadeOccurrenceOut] = Field(description="The latest occurrences made into tasks, newest first.")


class SchedulePageOut(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")
    has_more: bool
