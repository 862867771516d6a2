"""Tasks as operators submit them, and how their status follows the events of their legs. No IO here."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.fields import (
    WHITESPACE,
    Boolean,
    Integer,
    LanguageCode,
    Number,
    Phone,
    describe_storable_text,
)
from shared.outbound import is_http_url
from shared.times import ClientTime

Kind = Literal["errand", "meal", "supply_run"]
Priority = Literal["routine", "urgent", "critical"]
Vehicle = Literal["foot", "bicycle", "ebike", "car", "van"]
TaskStatus = Literal["submitted", "dispatching", "in_progress", "completed", "cancelled", "escalated"]
LegStatus = Literal[
    "pending", "offered", "assigned", "picked_up", "delivered", "confirmed", "failed", "cancelled"
]

_TEXT = f"[^{WHITESPACE}\\u0000]"  # neither whitespace nor NUL
_EMAIL = f"^[^@{WHITESPACE}\\u0000]{{1,64}}@[^@{WHITESPACE}\\u0000]{{1,255}}\\.[^@{WHITESPACE}\\u0000]{{2,}}$"
# What `_http_url` accepts; `format` tells generated clients it is a URI.
_HTTP_URL = f"^https?://[^{WHITESPACE}\\u0000/?#]+{_TEXT}*$"


def storable_text(value: str) -> str:
    """`value` if PostgreSQL can store it as text: no NUL character, no lone UTF-16 surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        str_strip_whitespace=True,
        json_schema_extra=describe_storable_text,
    )

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # Every string (and list of strings) must survive a round trip through PostgreSQL text/JSONB.
        if isinstance(value, str):
            return storable_text(value)
        if isinstance(value, list):
            for element in value:
                if isinstance(element, str):
                    storable_text(element)
        return value


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


# Two 63-bit numbers in hexadecimal: any string of this form is a position to list from.
TASK_CURSOR_PATTERN = "^[0-7][0-9a-f]{15}[0-7][0-9a-f]{15}$"


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


@dataclass(frozen=True, order=True)
class ListPosition:
    """Where a page of tasks ended: (writing transaction id, task sequence number).

    Tasks are listed in this order and only once every transaction that could still add a task
    before this position has finished, so a cursor never skips or repeats a task.
    """

    xid: int
    seq: int

    def encode(self) -> str:
        """The opaque cursor a client hands back for the next page: TASK_CURSOR_PATTERN, exactly."""
        return f"{self.xid:016x}{self.seq:016x}"

    @classmethod
    def decode(cls, cursor: str) -> ListPosition:
        """The position behind a cursor; ValueError when it is not one of ours."""
        if re.fullmatch(TASK_CURSOR_PATTERN, cursor):
            return cls(int(cursor[:16], 16), int(cursor[16:], 16))
        # The earlier form, base64 of `t1:<xid>:<seq>`: a client may still hold one to poll with.
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError) as exc:
            raise ValueError("not a cursor") from exc
        match = re.fullmatch(r"t1:([0-9]{1,19}):([0-9]{1,19})", raw)
        if match is None:
            raise ValueError("not a cursor")
        xid, seq = int(match.group(1)), int(match.group(2))
        if xid >= 2**63 or seq >= 2**63:
            raise ValueError("not a cursor")
        return cls(xid, seq)


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


# A leg moves forward through these ranks; an event never moves it backwards, except the
# explicit hand-backs below, so duplicates and late arrivals from another topic change nothing.
LEG_RANK: dict[str, int] = {
    "pending": 0,
    "offered": 1,
    "assigned": 2,
    "picked_up": 3,
    "delivered": 4,
    "confirmed": 5,
    "failed": 6,
    "cancelled": 6,
}

_LEG_STATUS_AFTER: dict[str, str] = {
    "leg.offered": "offered",
    "leg.assigned": "assigned",
    "leg.picked_up": "picked_up",
    "leg.delivered": "delivered",
    "leg.confirmed": "confirmed",
}
_HANDED_BACK = {"leg.offer_declined", "leg.offer_expired", "leg.problem_reported"}


def leg_status_after(current: str, event_type: str) -> str:
    """A leg's status once `event_type` has happened to it."""
    if event_type in _HANDED_BACK:
        return "pending" if LEG_RANK[current] <= LEG_RANK["assigned"] else current
    target = _LEG_STATUS_AFTER.get(event_type)
    if target is None or LEG_RANK[target] <= LEG_RANK[current]:
        return current
    return target


# The task status each event proves the task has been in. Dispatch and confirmation events travel on
# different topics, so a task can be completed before the projection hears that its leg was offered.
_TASK_STAGE_OF: dict[str, str] = {
    "leg.offered": "dispatching",
    "leg.assigned": "in_progress",
    "leg.picked_up": "in_progress",
    "leg.delivered": "in_progress",
    "leg.confirmed": "in_progress",
    "task.escalated": "escalated",
    "task.completed": "completed",
}


def leg_stage_of(event_type: str) -> str | None:
    """The leg status `event_type` proves the leg has been in, whatever its status is now."""
    return _LEG_STATUS_AFTER.get(event_type)


def task_stage_of(event_type: str) -> str | None:
    """The task status `event_type` proves the task has been in, whatever its status is now."""
    return _TASK_STAGE_OF.get(event_type)


def history_after(
    transitions: dict[str, str], *, before: str, after: str, stage: str | None, at: str
) -> dict[str, str]:
    """The time of each status once an event has moved a task or leg from `before` to `after`.

    A new status is stamped with the event's time (a status re-entered, like a re-offer, takes the
    new time). A stage the event proves but that came late, after a later status, is filled in at
    the event's own time and never moves the status back.
    """
    updated = dict(transitions)
    if after != before:
        updated[after] = at
    if stage is not None and stage not in updated:
        updated[stage] = at
    return updated


def task_status_after(current: str, leg_statuses: list[str], event_type: str) -> str:
    """A task's status given its legs' statuses once `event_type` has been applied."""
    if current in ("completed", "cancelled"):
        return current
    if event_type == "task.completed":
        return "completed"
    if event_type == "task.cancelled":
        return "cancelled"
    if event_type == "task.escalated":
        return "escalated"
    if any(LEG_RANK[s] >= LEG_RANK["assigned"] and s not in ("failed", "cancelled") for s in leg_statuses):
        return "in_progress"
    if current == "escalated":
        return current
    if any(s == "offered" for s in leg_statuses) or current == "dispatching":
        return "dispatching"
    return current


Cancellation = Literal["cancel", "already_cancelled", "completed"]

# Legs the volunteer has not yet picked up are withdrawn; goods already in hand finish their trip.
CANCELLABLE_LEG_STATUSES = frozenset({"pending", "offered", "assigned"})


def cancellation(task_status: str, leg_statuses: list[str]) -> Cancellation:
    """What cancelling a task in this state does: cancel it, nothing (already done), or refuse."""
    if task_status == "cancelled":
        return "already_cancelled"
    if task_status == "completed" or (leg_statuses and all(s == "confirmed" for s in leg_statuses)):
        return "completed"
    return "cancel"


def leg_status_on_cancel(status: str) -> str:
    """A leg's status once its task is cancelled."""
    return "cancelled" if status in CANCELLABLE_LEG_STATUSES else status
