"""Tasks as operators submit them, and how their status follows the events of their legs. No IO here."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.outbound import is_http_url
from shared.times import ClientTime

Kind = Literal["errand", "meal", "supply_run"]
Priority = Literal["routine", "urgent", "critical"]
Vehicle = Literal["foot", "bicycle", "ebike", "car", "van"]
TaskStatus = Literal["submitted", "dispatching", "in_progress", "completed", "cancelled", "escalated"]
LegStatus = Literal[
    "pending", "offered", "assigned", "picked_up", "delivered", "confirmed", "failed", "cancelled"
]

_LANGUAGE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
_PHONE = re.compile(r"^\+?[0-9 ()\-]{3,32}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")


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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

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
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_phone: str | None = Field(default=None, max_length=40)
    ready_at: ClientTime | None = None

    @field_validator("contact_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE.match(value):
            raise ValueError("not a phone number")
        return value


class DropoffIn(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)
    recipient_name: str | None = Field(default=None, max_length=200)
    recipient_phone: str | None = Field(default=None, max_length=40)
    recipient_email: str | None = Field(default=None, max_length=320)
    language: str = Field(default="zh", pattern=_LANGUAGE, max_length=12)
    no_contact: bool = False
    vulnerable: bool = False
    notes: str | None = Field(default=None, max_length=2000)

    @field_validator("recipient_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE.match(value):
            raise ValueError("not a phone number")
        return value

    @field_validator("recipient_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value


class ItemIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1_000_000)
    weight_kg: float | None = Field(default=None, gt=0, le=50_000)


class RequirementsIn(_Strict):
    vehicle: Vehicle | None = None
    skills: list[str] = Field(default_factory=list, max_length=20)
    languages: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: list[str]) -> list[str]:
        if any(not 0 < len(skill) <= 64 for skill in value):
            raise ValueError("each skill is 1 to 64 characters")
        return value

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        if any(not re.match(_LANGUAGE, language) for language in value):
            raise ValueError("each language is a code like 'en' or 'zh'")
        return value


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
    callback_url: str | None = Field(default=None, max_length=2048)
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
        if value is not None and not (re.match(r"^https?://[^\s/?#]+[^\s]*$", value) and is_http_url(value)):
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
    cursor: str | None = Field(default=None, max_length=200)


@dataclass(frozen=True, order=True)
class ListPosition:
    """Where a page of tasks ended: (writing transaction id, task sequence number).

    Tasks are listed in this order and only once every transaction that could still add a task
    before this position has finished, so a cursor never skips or repeats a task.
    """

    xid: int
    seq: int

    def encode(self) -> str:
        """The opaque cursor a client hands back for the next page."""
        return base64.urlsafe_b64encode(f"t1:{self.xid}:{self.seq}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> ListPosition:
        """The position behind a cursor; ValueError when it is not one of ours."""
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
