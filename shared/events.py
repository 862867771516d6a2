"""The CloudEvents 1.0 envelope, the topics, and a pydantic model for the data of every event type."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

TASKS_TOPIC = "errands.tasks.v1"
DISPATCH_TOPIC = "errands.dispatch.v1"
CONFIRMATIONS_TOPIC = "errands.confirmations.v1"
VOLUNTEERS_TOPIC = "errands.volunteers.v1"
NOTIFICATIONS_TOPIC = "errands.notifications.v1"
DEADLETTER_TOPIC = "errands.deadletter.v1"

ALL_TOPICS = (
    TASKS_TOPIC,
    DISPATCH_TOPIC,
    CONFIRMATIONS_TOPIC,
    VOLUNTEERS_TOPIC,
    NOTIFICATIONS_TOPIC,
    DEADLETTER_TOPIC,
)


class DeadLetterHeader:
    """Headers on the dead-letter topic: where a record came from, and what became of it.

    Plain strings, not an enum: the broker client's record builder takes exactly `str` names.
    """

    # Written by the consumer that gave up on a record.
    ORIGIN_TOPIC: Final = "errands-origin-topic"
    ORIGIN_PARTITION: Final = "errands-origin-partition"
    ORIGIN_OFFSET: Final = "errands-origin-offset"
    CONSUMER_GROUP: Final = "errands-consumer-group"
    EVENT_TYPE: Final = "errands-event-type"
    ERROR: Final = "errands-error"
    ATTEMPTS: Final = "errands-attempts"
    # On a record re-published by `errands dlq replay`: the id of the dead letter it came from.
    REPLAYED_FROM: Final = "errands-replayed-from"
    # On the marker `errands dlq replay` appends to the dead-letter topic after re-publishing one.
    REPLAY_OF: Final = "errands-replay-of"
    REPLAYED_TO: Final = "errands-replayed-to"


Source = Literal["/intake", "/dispatcher", "/notifier"]

# The W3C trace context of the request or event being handled; events built meanwhile carry it on.
current_traceparent: ContextVar[str | None] = ContextVar("current_traceparent", default=None)
# Who gave the command being handled (`person:<id>`, `volunteer:<id>`, `service:<token id>`,
# `token:<token id>`), set when a request is authorised; events built meanwhile carry it as `actor`.
current_actor: ContextVar[str | None] = ContextVar("current_actor", default=None)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 document in structured JSON mode, as it travels in a Kafka record value."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: str | None = None
    # CloudEvents extension: who caused the event, as `<kind>:<id>` (ids only); absent for the system.
    actor: str | None = None
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate_json(raw)


class EventData(BaseModel):
    """Base of every event's `data`: unknown fields are kept, so newer producers break no consumer."""

    model_config = ConfigDict(extra="allow")


# --- errands.tasks.v1 -----------------------------------------------------------------------------


class Place(EventData):
    lat: float
    lon: float
    address: str | None = None


class PickupData(Place):
    # Fields a copy of this must lose when the task's personal data is erased.
    PERSONAL: ClassVar[tuple[str, ...]] = ("contact_name_masked", "contact_phone_masked", "contact_sealed")

    contact_name_masked: str | None = None
    contact_phone_masked: str | None = None
    contact_sealed: str | None = None
    ready_at: datetime | None = None


class DropoffData(Place):
    PERSONAL: ClassVar[tuple[str, ...]] = (
        "address",
        "recipient_name_masked",
        "recipient_phone_masked",
        "recipient_email_masked",
        "recipient_sealed",
        "notes",
    )

    recipient_name_masked: str | None = None
    recipient_phone_masked: str | None = None
    recipient_email_masked: str | None = None
    # name, phone and e-mail in clear, sealed with the shared data key (see shared.crypto.seal).
    recipient_sealed: str | None = None
    language: str = "zh"
    no_contact: bool = False
    vulnerable: bool = False
    notes: str | None = None


class ItemData(EventData):
    name: str
    quantity: int
    weight_kg: float | None = None


class RequirementsData(EventData):
    vehicle: str | None = None
    skills: list[str] = []
    languages: list[str] = []


class SubmittedLeg(EventData):
    leg_id: uuid.UUID
    index: int
    dropoff: DropoffData
    code_hash: str


class TaskSubmitted(EventData):
    task_id: uuid.UUID
    organisation_id: uuid.UUID
    kind: str
    priority: str
    pickup: PickupData
    legs: list[SubmittedLeg]
    items: list[ItemData] = []
    requirements: RequirementsData = RequirementsData()
    deliver_by: datetime | None = None
    callback_url: str | None = None
    external_ref: str | None = None
    # The operator's notes for whoever carries the task (shown to the volunteer once a leg is theirs).
    notes: str | None = None


class TaskCancelled(EventData):
    task_id: uuid.UUID
    organisation_id: uuid.UUID
    reason: str | None = None


class TaskPersonalDataErased(EventData):
    """An admin erased the personal data of a person named in this task: copies of it go too."""

    task_id: uuid.UUID
    organisation_id: uuid.UUID


# --- errands.dispatch.v1 --------------------------------------------------------------------------


class LegOffered(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    expires_at: datetime
    distance_m: float | None = None
    # The route the leg is offered in or carried on (`GET /v1/me/assignments` shows its stops);
    # None for a leg assigned by hand.
    route_id: uuid.UUID | None = None
    # Only when the volunteer asked for an SMS on a new offer: `{"phone", "language"}` sealed with
    # the shared data key (see shared.crypto.seal), for the notifier to send it.
    sms_sealed: str | None = None


class LegOfferDeclined(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    reason: str | None = None
    # The route the leg is offered in or carried on (`GET /v1/me/assignments` shows its stops);
    # None for a leg assigned by hand.
    route_id: uuid.UUID | None = None


class LegOfferExpired(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    # The route the leg is offered in or carried on (`GET /v1/me/assignments` shows its stops);
    # None for a leg assigned by hand.
    route_id: uuid.UUID | None = None


class LegAssigned(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    volunteer_name_masked: str | None = None
    volunteer_name: str | None = None
    offer_id: uuid.UUID | None = None
    manual: bool = False
    # An operator assigned it past a refusal (off duty, insurance, rest, daily cap): their reason.
    override_reason: str | None = None
    # An operator moved it from this volunteer, who no longer holds it.
    moved_from: uuid.UUID | None = None
    # Whether the volunteer speaks the drop-off's language (the daily report's language matches).
    speaks_dropoff_language: bool | None = None
    # The route the leg is offered in or carried on (`GET /v1/me/assignments` shows its stops);
    # None for a leg assigned by hand.
    route_id: uuid.UUID | None = None


class LegPickedUp(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    # When the volunteer did it, as their app said; the envelope's time is when it was recorded.
    occurred_at: datetime | None = None


class LegDelivered(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    code_hash: str | None = None
    # A no-contact drop-off's proof: the SHA-256 of the photo's stored bytes, and (since photos are
    # uploaded to the dispatcher) the photo's id, from which its fetch path follows.
    photo_sha256: str | None = None
    photo_id: uuid.UUID | None = None
    note: str | None = None
    occurred_at: datetime | None = None


class LegProblemReported(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    reason: str | None = None
    occurred_at: datetime | None = None
    # Handed back after pickup: the goods are with the volunteer and the leg waits for an operator's
    # decision (`needs_decision`) instead of going back to pending.
    needs_decision: bool = False


# What an operator may decide about a leg waiting for it (see `leg.decided`).
DecisionAction = Literal["return_to_pickup", "hand_over", "confirm", "fail"]


class LegDecided(EventData):
    """An operator decided about a leg handed back after pickup, or a flagged delivery.

    `status` is where the leg went; a hand-over moves its pickup to `pickup` (where the goods are)
    and, with a volunteer chosen, is followed by `leg.assigned`. A failed leg also raises `leg.failed`.
    """

    task_id: uuid.UUID
    leg_id: uuid.UUID
    action: DecisionAction
    status: str
    volunteer_id: uuid.UUID | None = None  # who held the goods
    assigned_to: uuid.UUID | None = None
    pickup: Place | None = None
    note: str | None = None


class LegFailed(EventData):
    """The leg will not be delivered: an operator failed it (`reason` says why it waited for them)."""

    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID | None = None
    reason: Literal["handed_back", "flagged"]
    note: str | None = None


class TaskEscalated(EventData):
    task_id: uuid.UUID
    leg_ids: list[uuid.UUID]
    # `waited_too_long` / `deadline_near`: the task's first escalation, a leg nobody took. A leg
    # escalated again on its own: `waited_too_long_<status>` (pending, offered, assigned, picked_up)
    # or `will_miss_deliver_by`, with the leg's status and its estimates when it had them.
    reason: str
    leg_status: str | None = None
    pickup_eta: datetime | None = None
    dropoff_eta: datetime | None = None
    deliver_by: datetime | None = None


class LegEtaUpdated(EventData):
    """A leg in hand has new estimates: at assignment, at pickup, and when a fix moves them enough."""

    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    leg_status: str
    pickup_eta: datetime | None = None
    dropoff_eta: datetime
    deliver_by: datetime | None = None
    # Whether the drop-off estimate is past `deliver_by`; `slipped` only on the estimate that first
    # went past it (once per slip: a leg back on time that slips again slips anew), numbered by `slip`.
    late: bool = False
    slipped: bool = False
    slip: int = 0


# --- errands.confirmations.v1 ---------------------------------------------------------------------


class LegConfirmed(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    # "operator": confirmed by an operator on other proof, after too many wrong codes.
    method: Literal["code", "photo", "operator"]
    photo_sha256: str | None = None


class LegConfirmationFailed(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID
    volunteer_id: uuid.UUID
    attempts: int
    flagged: bool = False


class TaskCompleted(EventData):
    task_id: uuid.UUID
    leg_ids: list[uuid.UUID]


# --- errands.volunteers.v1 ------------------------------------------------------------------------


class VolunteerRegistered(EventData):
    volunteer_id: uuid.UUID
    organisation_id: uuid.UUID
    name_masked: str | None = None
    vehicle: str
    languages: list[str] = []
    skills: list[str] = []


class VolunteerDutyChanged(EventData):
    volunteer_id: uuid.UUID
    on_duty: bool


class VolunteerLocationReported(EventData):
    volunteer_id: uuid.UUID
    lat: float
    lon: float
    accuracy_m: float | None = None
    at: datetime


# --- errands.notifications.v1 ---------------------------------------------------------------------


class NotificationSent(EventData):
    task_id: uuid.UUID
    leg_id: uuid.UUID | None = None
    channel: str
    recipient_masked: str | None = None
    template: str
    language: str


class NotificationFailed(NotificationSent):
    error: str


EVENT_TYPES: dict[str, tuple[str, type[EventData]]] = {
    "task.submitted": (TASKS_TOPIC, TaskSubmitted),
    "task.cancelled": (TASKS_TOPIC, TaskCancelled),
    "task.personal_data_erased": (TASKS_TOPIC, TaskPersonalDataErased),
    "leg.offered": (DISPATCH_TOPIC, LegOffered),
    "leg.offer_declined": (DISPATCH_TOPIC, LegOfferDeclined),
    "leg.offer_expired": (DISPATCH_TOPIC, LegOfferExpired),
    "leg.assigned": (DISPATCH_TOPIC, LegAssigned),
    "leg.picked_up": (DISPATCH_TOPIC, LegPickedUp),
    "leg.delivered": (DISPATCH_TOPIC, LegDelivered),
    "leg.problem_reported": (DISPATCH_TOPIC, LegProblemReported),
    "leg.decided": (DISPATCH_TOPIC, LegDecided),
    "leg.failed": (DISPATCH_TOPIC, LegFailed),
    "task.escalated": (DISPATCH_TOPIC, TaskEscalated),
    "leg.eta_updated": (DISPATCH_TOPIC, LegEtaUpdated),
    "leg.confirmed": (CONFIRMATIONS_TOPIC, LegConfirmed),
    "leg.confirmation_failed": (CONFIRMATIONS_TOPIC, LegConfirmationFailed),
    "task.completed": (CONFIRMATIONS_TOPIC, TaskCompleted),
    "volunteer.registered": (VOLUNTEERS_TOPIC, VolunteerRegistered),
    "volunteer.duty_changed": (VOLUNTEERS_TOPIC, VolunteerDutyChanged),
    "volunteer.location_reported": (VOLUNTEERS_TOPIC, VolunteerLocationReported),
    "notification.sent": (NOTIFICATIONS_TOPIC, NotificationSent),
    "notification.failed": (NOTIFICATIONS_TOPIC, NotificationFailed),
}

_TYPE_OF_MODEL = {model: type_ for type_, (_, model) in EVENT_TYPES.items()}


def build_event(
    data: EventData, *, source: Source, subject: uuid.UUID | str, traceparent: str | None = None
) -> tuple[str, CloudEvent]:
    """Wrap event data in its envelope; returns the topic it belongs on with the event."""
    type_ = _TYPE_OF_MODEL[type(data)]
    topic, _ = EVENT_TYPES[type_]
    event = CloudEvent(
        source=source,
        type=type_,
        subject=str(subject),
        traceparent=traceparent or current_traceparent.get(),
        actor=current_actor.get(),
        data=data.model_dump(mode="json", exclude_none=True),
    )
    return topic, event


def parse_data(event: CloudEvent) -> EventData:
    """The typed data of a known event; raises KeyError for an unknown type, ValidationError for bad data."""
    _, model = EVENT_TYPES[event.type]
    return model.model_validate(event.data)
