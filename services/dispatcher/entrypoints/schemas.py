"""The dispatcher's request and response bodies: what `/openapi.json` publishes, and what is checked.

Every `*In` validates a request before a handler sees it; every `*Out` validates an answer before it
is sent (`respond`), so what the OpenAPI document promises is what clients get.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    model_validator,
)

from services.dispatcher.adapters.tables import VolunteerRow
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.domain.welfare import Status
from shared.fields import Boolean, Number, Phone, describe_storable_text, whole_float_as_int
from shared.http import ProblemError, StorableModel, json_response
from shared.times import ClientTime, within

# --- requests

Vehicle = Literal["foot", "bicycle", "ebike", "car", "van"]
MaxActiveLegs = Annotated[int, Strict(), Field(ge=1, le=20), BeforeValidator(whole_float_as_int)]


def _date_text(value: Any) -> Any:
    """Only the text form of a date: a number is no date in JSON."""
    if not isinstance(value, str):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


_INSURED_UNTIL_DESCRIPTION = (
    "The last day the volunteer's insurance covers (YYYY-MM-DD, in the organisation's local time "
    "zone); null: no end date. From the day after, they get no offers. A date implies "
    "`insured: true`; `insured: false` clears it."
)
InsuredUntil = Annotated[
    date,
    BeforeValidator(_date_text),
    WithJsonSchema({"type": "string", "format": "date", "description": _INSURED_UNTIL_DESCRIPTION}),
]


def _insurance_given(model: Any) -> None:
    """An end date says the volunteer is insured until then; `insured: false` says they are not
    insured at all, whatever date comes with it, so it clears the date."""
    if "insured" in model.model_fields_set and model.insured is False:
        model.insured_until = None
    elif model.insured_until is not None:
        model.insured = True


class _Strict(StorableModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class Home(_Strict):
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)


class VolunteerIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    phone: Phone | None = None
    languages: list[str] = Field(default_factory=lambda: ["zh"], max_length=10)
    skills: list[str] = Field(default_factory=list, max_length=20)
    vehicle: Vehicle = "foot"
    capacity_kg: Number = Field(default=10.0, ge=0, le=5_000)
    insured: Boolean = Field(
        default=False, description="Whether the volunteer is insured; `true` alone: with no end date."
    )
    insured_until: InsuredUntil | None = None
    max_active_legs: MaxActiveLegs = 3
    home: Home | None = None

    @model_validator(mode="after")
    def _insured_until_implies_insured(self) -> Self:
        _insurance_given(self)
        return self


class VolunteerPatch(_Strict):
    """Fields an operator may change; those left out stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: Phone | None = None
    languages: list[str] | None = Field(default=None, max_length=10)
    skills: list[str] | None = Field(default=None, max_length=20)
    vehicle: Vehicle | None = None
    capacity_kg: Number | None = Field(default=None, ge=0, le=5_000)
    insured: Boolean | None = None
    insured_until: InsuredUntil | None = Field(
        default=None, description=_INSURED_UNTIL_DESCRIPTION + " Null removes the end date."
    )
    max_active_legs: MaxActiveLegs | None = None
    home: Home | None = None

    @model_validator(mode="after")
    def _insured_until_implies_insured(self) -> Self:
        _insurance_given(self)
        return self


# Where a page ended: the last volunteer's registration time (microseconds since 1970, until the
# year 4253) and id, in hexadecimal. Any string of this form is a position to list from.
VOLUNTEER_CURSOR_PATTERN = "^[0-9a-f]{46}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class VolunteerListQuery(_Strict):
    status: Literal["on_duty", "off_duty"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    insurance_lapses_within_days: int | None = Field(
        default=None,
        ge=1,
        le=366,
        description=(
            "Only volunteers whose insurance lapses within this many days: its last covered day "
            "(`insured_until`) is today or one of the next days, today being the organisation's "
            "local date. 7 lists who loses cover by the same weekday next week. Cover already "
            "lapsed, or with no end date, is not listed."
        ),
    )
    # Documented as the cursors now handed out; `decode_cursor` still takes the earlier form.
    cursor: str | None = Field(
        default=None, max_length=200, json_schema_extra={"pattern": VOLUNTEER_CURSOR_PATTERN}
    )


class DutyIn(_Strict):
    on_duty: Boolean


class PreferencesIn(_Strict):
    sms_on_offer: Boolean = Field(
        description="An SMS to my phone when a new offer waits (at most one per offer, and one per "
        "OFFER_SMS_MIN_INTERVAL_S); needs a phone number on record."
    )
    language: Literal["zh", "en", "ko", "ja"] | None = Field(
        default=None, description="The SMS's language; unset: the one kept, else my first language."
    )


class PreferencesOut(BaseModel):
    sms_on_offer: bool
    sms_language: str | None
    has_phone: bool


class LocationIn(_Strict):
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    accuracy_m: Number | None = Field(default=None, ge=0, le=100_000)
    # A fix a day old says nothing about where anyone is; a phone's clock may run a few minutes ahead.
    at: Annotated[ClientTime, within(past=timedelta(days=1), future=timedelta(minutes=5))] | None = None


class WaitQuery(BaseModel):
    wait: float = Field(default=0, ge=0, le=60)


class DeclineIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


OCCURRED_AT_DESCRIPTION = (
    "When the volunteer did it, if not just now (an app that was offline sends it later): "
    "by default at most a day ago and at most 5 minutes ahead of the server's clock "
    "(VOLUNTEER_ACTION_MAX_AGE_S, VOLUNTEER_ACTION_MAX_SKEW_S)."
)


class ProblemIn(StorableModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str | None = Field(default=None, max_length=500)
    occurred_at: ClientTime | None = Field(default=None, description=OCCURRED_AT_DESCRIPTION)


class PickedUpIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    occurred_at: ClientTime | None = Field(default=None, description=OCCURRED_AT_DESCRIPTION)


def check_occurred_at(occurred_at: datetime | None, *, max_age_s: float, max_skew_s: float) -> datetime:
    """When the volunteer's action happened: `occurred_at` within the bounds, else now; 422 outside them."""
    now = datetime.now(UTC)
    if occurred_at is None:
        return now
    if occurred_at > now + timedelta(seconds=max_skew_s):
        message = f"time must be at most {int(max_skew_s)} seconds ahead"
    elif occurred_at < now - timedelta(seconds=max_age_s):
        message = f"time must be at most {int(max_age_s)} seconds ago"
    else:
        return occurred_at
    raise ProblemError(
        422,
        "Validation failed",
        "occurred_at is outside the times accepted.",
        errors=[{"field": "$.occurred_at", "message": message, "type": "value_error"}],
    )


class OverrideIn(StorableModel):
    """An operator's choice past a refusal (off duty, insurance lapsed, rest owed, a daily cap)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(min_length=1, max_length=500, description="Why; recorded on the leg.assigned event.")


OVERRIDE_DESCRIPTION = (
    "Assign even though the volunteer is off duty, uninsured, owed rest or at a daily cap. "
    "Their deactivation and their limit on legs still hold."
)


class AssignIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    volunteer_id: uuid.UUID
    override: OverrideIn | None = Field(default=None, description=OVERRIDE_DESCRIPTION)


class MoveIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    volunteer_id: uuid.UUID = Field(description="The volunteer who takes the leg over.")
    override: OverrideIn | None = Field(default=None, description=OVERRIDE_DESCRIPTION)


class ReleaseIn(StorableModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    to_volunteer_id: uuid.UUID | None = Field(
        default=None,
        description="Who takes the legs over; without it they go back to pending, for the matcher.",
    )
    override: OverrideIn | None = Field(default=None, description=OVERRIDE_DESCRIPTION)
    reason: str | None = Field(default=None, max_length=500, description="Why, e.g. 'fell ill'.")


def _describe_decision(schema: dict[str, Any], model: type[BaseModel]) -> None:
    describe_storable_text(schema, model)
    schema["allOf"] = [
        # `confirm` says what proof in `note`.
        {
            "if": {"required": ["action"], "properties": {"action": {"const": "confirm"}}},
            "then": {"required": ["note"], "properties": {"note": {"type": "string"}}},
        },
        # A volunteer is chosen with `hand_over` only.
        {
            "if": {"required": ["volunteer_id"], "properties": {"volunteer_id": {"type": "string"}}},
            "then": {"properties": {"action": {"const": "hand_over"}}},
        },
    ]


class DecisionIn(StorableModel):
    """An operator's decision on a leg handed back after pickup (`needs_decision`), or a flagged delivery."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_describe_decision)
    action: Literal["return_to_pickup", "hand_over", "fail", "confirm"] = Field(
        description=(
            "For a leg in `needs_decision`: `return_to_pickup` (the volunteer brings the goods back; the "
            "leg is pending from its pickup), `hand_over` (the goods change hands where they are: the "
            "pickup becomes the holder's last known location; to `volunteer_id`, or pending for "
            "matching), or `fail`. For a delivered leg flagged for wrong codes: `confirm` (by other "
            "proof, said in `note`) or `fail`."
        )
    )
    volunteer_id: uuid.UUID | None = Field(
        default=None, description="With `hand_over` only: the volunteer of your organisation who takes over."
    )
    note: str | None = Field(default=None, max_length=1000, description="Why; required with `confirm`.")

    @model_validator(mode="after")
    def _fits_action(self) -> Self:
        if self.volunteer_id is not None and self.action != "hand_over":
            raise ProblemError(
                422,
                "Validation failed",
                "volunteer_id goes with hand_over only.",
                errors=[{"field": "$.volunteer_id", "message": "only with action hand_over"}],
            )
        if self.action == "confirm" and self.note is None:
            raise ProblemError(
                422,
                "Validation failed",
                "A confirmation by other proof says what proof in note.",
                errors=[{"field": "$.note", "message": "required with action confirm"}],
            )
        return self


def _describe_delivery(schema: dict[str, Any], model: type[BaseModel]) -> None:
    describe_storable_text(schema, model)
    schema["anyOf"] = [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("confirmation_code", "photo_sha256")
    ] + [{"required": ["photo_id"], "properties": {"photo_id": {"type": "string", "format": "uuid"}}}]


class DeliveredIn(StorableModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_describe_delivery)
    confirmation_code: str | None = Field(default=None, min_length=4, max_length=12, pattern=r"^[0-9]+$")
    photo_id: uuid.UUID | None = Field(
        default=None,
        description="A no-contact drop-off's proof: the id of a photo uploaded for this leg "
        "(`POST /v1/me/legs/{leg_id}/photos`).",
    )
    photo_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Older apps' proof: the `sha256` an upload of this leg answered; prefer `photo_id`.",
    )
    note: str | None = Field(default=None, max_length=1000)
    occurred_at: ClientTime | None = Field(default=None, description=OCCURRED_AT_DESCRIPTION)

    @model_validator(mode="after")
    def _code_or_photo(self) -> DeliveredIn:
        if self.confirmation_code is None and self.photo_sha256 is None and self.photo_id is None:
            raise ValueError("send confirmation_code, or photo_id for a no-contact drop-off")
        return self


# --- responses: they document the answers in /openapi.json (schemathesis checks answers against them)


class PointOut(BaseModel):
    lat: float
    lon: float


class FixOut(BaseModel):
    lat: float | None
    lon: float | None
    at: datetime


class VolunteerOut(BaseModel):
    id: uuid.UUID
    name: str
    phone: str | None
    languages: list[str]
    skills: list[str]
    vehicle: Vehicle
    capacity_kg: float
    insured: bool = Field(description="Whether the volunteer declared insurance (see `insured_until`).")
    insured_until: date | None = Field(
        default=None,
        description=(
            "The last day the insurance covers, in the organisation's local time zone; null: no end date."
        ),
    )
    max_active_legs: int
    home: PointOut | None
    on_duty: bool
    status: Literal["on_duty", "off_duty"]
    active_legs: int
    location: FixOut | None
    deactivated_at: datetime | None = Field(
        default=None, description="When an operator deactivated the volunteer; null while active."
    )
    shift_on_duty_s: float = Field(
        default=0.0, description="Duty on the shift clock: since the last full rest, a short break included."
    )
    rest_owed_until: datetime | None = Field(
        default=None, description="Rest is owed until then: no offers, and no going on duty, before it."
    )
    duty_today_s: float = Field(default=0.0, description="Time on duty since local midnight.")
    vetting_status: Literal["pending", "approved", "rejected"] = Field(
        default="approved", description="Only approved volunteers get offers or legs by hand."
    )
    legs_done_today: int = Field(default=0, description="Legs delivered since local midnight.")
    limit_reached: Literal["rest_owed", "daily_duty_cap", "daily_legs_cap"] | None = Field(
        default=None, description="What stops the volunteer working now; null when nothing does."
    )
    may_work_from: datetime | None = Field(
        default=None, description="When `limit_reached` stops applying: offers and going on duty resume."
    )


class VolunteerCreatedOut(VolunteerOut):
    token: str = Field(description="The volunteer app's token, shown this once.")
    token_id: uuid.UUID = Field(description="The token's id, to revoke it by.")


class EnrolmentOut(BaseModel):
    link: str = Field(description="The one-time enrolment link, shown this once; open it on the phone.")
    expires_at: datetime
    qr_png_url: str = Field(description="The link as a QR code, PNG (operator's token).")
    qr_svg_url: str = Field(description="The link as a QR code, SVG (operator's token).")


class EnrolmentExchangeOut(BaseModel):
    volunteer_id: uuid.UUID
    volunteer_token: str = Field(description="The new device's token, shown this once.")
    device_id: uuid.UUID = Field(description="The device token's id, to revoke it by.")


class InviteCodeIn(_Strict):
    valid_for_s: int | None = Field(
        default=None, ge=60, le=366 * 86400, description="How long the code works; null: until replaced."
    )


class InviteCodeOut(BaseModel):
    id: uuid.UUID
    code: str = Field(description="The invite code, shown this once.")
    expires_at: datetime | None


class SignupIn(_Strict):
    invite_code: str = Field(min_length=8, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    phone: Phone | None = None
    languages: list[str] = Field(default_factory=lambda: ["zh"], max_length=10)
    skills: list[str] = Field(default_factory=list, max_length=20)
    vehicle: Vehicle = "foot"
    capacity_kg: Number = Field(default=10.0, ge=0, le=5_000)
    home: Home | None = None


class SignupOut(BaseModel):
    volunteer_id: uuid.UUID
    vetting_status: Literal["pending", "approved", "rejected"]
    volunteer_token: str = Field(
        description="The app's token, shown this once: it gets no offers until approved."
    )
    device_id: uuid.UUID


class VettingIn(_Strict):
    identity_checked: Boolean
    insured_until: InsuredUntil | None = Field(
        default=None, description="The last day the insurance seen covers; null: none shown or no end date."
    )
    insured: Boolean = Field(default=False, description="Whether insurance was shown at all.")
    training_done: Boolean
    decision: Literal["approve", "reject"]
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _insured_until_implies_insured(self) -> Self:
        _insurance_given(self)
        return self


class VettingRecordOut(BaseModel):
    id: uuid.UUID
    checked_by: str = Field(description="Who checked: `person:<id>`, or `token:<id>` for a bare token.")
    identity_checked: bool
    insured_until: date | None
    training_done: bool
    decision: Literal["approve", "reject"]
    note: str | None
    at: datetime


class VettingOut(BaseModel):
    volunteer_id: uuid.UUID
    vetting_status: Literal["pending", "approved", "rejected"]
    records: list[VettingRecordOut]


class DeviceOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    revoked_at: datetime | None


class DeviceListOut(BaseModel):
    items: list[DeviceOut]


class VolunteerTokenOut(BaseModel):
    id: uuid.UUID = Field(description="The token's id, to revoke it by.")
    token: str = Field(description="The volunteer app's new token, shown this once.")


class VolunteerPageOut(BaseModel):
    items: list[VolunteerOut]
    next_cursor: str | None


# Every `LegStatus`, spelled out so the published schema lists the values inline.
LegStatusName = Literal[
    LegStatus.PENDING,
    LegStatus.OFFERED,
    LegStatus.ASSIGNED,
    LegStatus.PICKED_UP,
    LegStatus.DELIVERED,
    LegStatus.CONFIRMED,
    LegStatus.FAILED,
    LegStatus.CANCELLED,
    LegStatus.NEEDS_DECISION,
]


class LegOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    status: LegStatusName
    kind: str | None
    priority: str
    deliver_by: str | None
    pickup: dict[str, Any]
    dropoff: dict[str, Any] = Field(description="The recipient's name and phone only once the leg is yours.")
    items: list[dict[str, Any]]
    flagged: bool = Field(
        default=False,
        description="Too many wrong codes: the leg takes no delivery report until an operator resolves it.",
    )
    pickup_eta: datetime | None = Field(
        default=None,
        description="Assigned: when you should reach the pickup, from your last location. "
        "Null once picked up.",
    )
    dropoff_eta: datetime | None = Field(
        default=None,
        description="Assigned or picked up: when you should reach the drop-off, refreshed as your location "
        "reports arrive. Null before any estimate.",
    )
    eta_late: bool = Field(default=False, description="The drop-off estimate is past the leg's deliver_by.")
    route: RouteOut | None = Field(
        default=None,
        description="In `legs`: the route you carry this leg on (null for a leg assigned by hand).",
    )


class PhotoOut(BaseModel):
    """A photo as stored: re-encoded without metadata, upright, scaled down."""

    id: uuid.UUID = Field(description="Name it as `photo_id` in the leg's delivered report.")
    leg_id: uuid.UUID
    sha256: str = Field(description="SHA-256 of the stored bytes (hex), as `leg.confirmed` carries it.")
    content_type: Literal["image/jpeg", "image/png"]
    width: int
    height: int
    size_bytes: int
    url: str = Field(description="Where the task's operators fetch it (GET, operator's token).")
    notes: str | None = Field(
        default=None,
        description="The task's notes for whoever carries it; only once the leg is yours (the drop-off's "
        "own `notes` likewise appear in `dropoff` only then).",
    )


class RoutePlaceOut(BaseModel):
    lat: float
    lon: float
    address: str | None = None


class RouteStopOut(BaseModel):
    leg_id: uuid.UUID
    kind: Literal["pickup", "dropoff"]
    place: RoutePlaceOut
    eta: datetime | None = Field(description="When you should be there, as the route was last planned.")


class RouteOut(BaseModel):
    """Legs carried together in one trip: the stops still to do, in order (every pickup before its
    drop-off). Each leg is still picked up, delivered and confirmed on its own."""

    id: uuid.UUID
    stops: list[RouteStopOut]


class OfferOut(BaseModel):
    id: uuid.UUID
    expires_at: datetime
    distance_m: float
    leg: LegOut
    route: RouteOut | None = Field(
        default=None,
        description="The route this offer is part of, as it would be once accepted: several offers may "
        "share one (accepting one takes them all, declining one returns them all), or the leg goes into "
        "the route you already carry. A single leg is a route of its own.",
    )


class AssignmentsOut(BaseModel):
    offers: list[OfferOut]
    legs: list[LegOut]


class AssignedOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    status: LegStatusName
    volunteer_id: uuid.UUID


class ReleasedLegOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    status: LegStatusName
    volunteer_id: uuid.UUID | None = Field(description="Its new holder; null when back to pending.")


class HeldLegOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    status: LegStatusName


class ReleasedOut(BaseModel):
    volunteer_id: uuid.UUID
    legs: list[ReleasedLegOut] = Field(description="The legs taken from the volunteer, as they are now.")
    needs_decision: list[HeldLegOut] = Field(
        description="Legs already picked up: the goods are with the volunteer, an operator decides."
    )


class DecisionOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    status: LegStatusName
    volunteer_id: uuid.UUID | None = Field(description="Who holds the leg now (null: nobody).")
    pickup: PointOut = Field(description="Where the leg is picked up from now on.")


class OfferDeclinedOut(BaseModel):
    id: uuid.UUID
    status: Literal["declined"]


class LegStatusOut(BaseModel):
    id: uuid.UUID
    status: LegStatusName


def respond(
    model: type[BaseModel], body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`body` as JSON, once `model` (the answer `/openapi.json` documents) has validated it.

    An answer that breaks its model is our bug: it fails as a 500 rather than reach a client.
    """
    model.model_validate(body)
    return json_response(body, status=status, headers=headers)


def volunteer_view(row: VolunteerRow, welfare: Status) -> dict[str, Any]:
    """A volunteer as `VolunteerOut` says it; `welfare` holds their shift clock and daily counts now."""
    refusal = welfare.refusal
    return {
        "id": str(row.id),
        "name": row.name,
        "phone": row.phone,
        "languages": row.languages,
        "skills": row.skills,
        "vehicle": row.vehicle,
        "capacity_kg": row.capacity_kg,
        "insured": row.insured,
        "insured_until": row.insured_until.isoformat() if row.insured_until is not None else None,
        "max_active_legs": row.max_active_legs,
        "home": {"lat": row.home_lat, "lon": row.home_lon} if row.home_lat is not None else None,
        "on_duty": row.on_duty,
        "status": "on_duty" if row.on_duty else "off_duty",
        "active_legs": row.active_legs,
        "location": {"lat": row.lat, "lon": row.lon, "at": row.location_at.isoformat()}
        if row.location_at is not None
        else None,
        "deactivated_at": row.deactivated_at.isoformat() if row.deactivated_at is not None else None,
        "shift_on_duty_s": welfare.shift.on_duty.total_seconds(),
        "rest_owed_until": _utc(welfare.shift.rest_owed_until),
        "duty_today_s": welfare.duty_today.total_seconds(),
        "legs_done_today": welfare.legs_today,
        "limit_reached": refusal.reason if refusal is not None else None,
        "may_work_from": _utc(refusal.until) if refusal is not None else None,
        "vetting_status": row.vetting_status,
    }


def _utc(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def encode_cursor(row: VolunteerRow) -> str:
    """Where a page ended, as `VOLUNTEER_CURSOR_PATTERN`: after this volunteer."""
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros:014x}{row.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The registration time and id a cursor lists after; a 400 problem for any other string."""
    if re.fullmatch(VOLUNTEER_CURSOR_PATTERN, cursor):
        return _EPOCH + timedelta(microseconds=int(cursor[:14], 16)), uuid.UUID(cursor[14:])
    # The earlier form, base64 of `[time, id]` in JSON: a client may still be paging with one.
    try:
        created_at, volunteer_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        position = datetime.fromisoformat(created_at)
        if position.tzinfo is None:
            raise ValueError("cursors carry an aware time")
        # In UTC, as the database compares it: a time that leaves datetime's range there is no cursor.
        return position.astimezone(UTC), uuid.UUID(volunteer_id)
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise ProblemError(
            400,
            "Bad request",
            "The cursor is not one this API handed out.",
            errors=[{"field": "cursor", "message": "not a cursor this API returned"}],
        ) from exc
