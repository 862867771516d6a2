"""Tasks as operators submit them, and how their status follows the events of their legs. No IO here."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class PickupIn(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_phone: str | None = Field(default=None, max_length=40)
    ready_at: AwareDatetime | None = None

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
    deliver_by: AwareDatetime | None = None
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
        if value is not None and not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
            raise ValueError("callback_url must be an http or https URL")
        return value

    def total_weight_kg(self) -> float:
        return sum((item.weight_kg or 0.0) for item in self.items)


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
