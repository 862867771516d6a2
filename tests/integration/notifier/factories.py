"""Events as the other services publish them, for driving the notifier's handlers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from shared.crypto import code_hash, confirmation_code, seal
from shared.events import (
    CloudEvent,
    DropoffData,
    LegAssigned,
    LegDelivered,
    LegPickedUp,
    PickupData,
    SubmittedLeg,
    TaskSubmitted,
    build_event,
)
from shared.settings import Settings


@dataclass
class TaskScenario:
    settings: Settings
    organisation_id: uuid.UUID
    legs: int = 1
    no_contact: bool = False
    language: str = "en"
    phone: str | None = "+8613900005678"
    email: str | None = "wang.fang@example.org"
    callback_url: str | None = None
    task_id: uuid.UUID = field(default_factory=uuid.uuid4)
    volunteer_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        self.leg_ids = [uuid.uuid4() for _ in range(self.legs)]

    def code(self, leg_id: uuid.UUID) -> str:
        return confirmation_code(self.settings.code_key, leg_id)

    def submitted(self) -> CloudEvent:
        key = self.settings.data_key
        contact = {"name": "Wang Fang", "phone": self.phone, "email": self.email}
        data = TaskSubmitted(
            task_id=self.task_id,
            organisation_id=self.organisation_id,
            kind="errand",
            priority="urgent",
            pickup=PickupData(lat=29.87, lon=121.55),
            legs=[
                SubmittedLeg(
                    leg_id=leg_id,
                    index=index,
                    code_hash=code_hash(self.settings.code_key, leg_id, self.code(leg_id)),
                    dropoff=DropoffData(
                        lat=29.88,
                        lon=121.56,
                        recipient_sealed=seal(key, contact),
                        language=self.language,
                        no_contact=self.no_contact,
                    ),
                )
                for index, leg_id in enumerate(self.leg_ids)
            ],
            callback_url=self.callback_url,
        )
        return build_event(data, source="/intake", subject=self.task_id)[1]

    def delivered(
        self, leg_id: uuid.UUID, *, code: str | None = None, photo_sha256: str | None = None
    ) -> CloudEvent:
        typed = self.code(leg_id) if code is None and photo_sha256 is None else code
        data = LegDelivered(
            task_id=self.task_id,
            leg_id=leg_id,
            volunteer_id=self.volunteer_id,
            code_hash=code_hash(self.settings.code_key, leg_id, typed) if typed is not None else None,
            photo_sha256=photo_sha256,
        )
        return build_event(data, source="/dispatcher", subject=self.task_id)[1]

    def assigned(self, leg_id: uuid.UUID) -> CloudEvent:
        data = LegAssigned(task_id=self.task_id, leg_id=leg_id, volunteer_id=self.volunteer_id)
        return build_event(data, source="/dispatcher", subject=self.task_id)[1]

    def picked_up(self, leg_id: uuid.UUID) -> CloudEvent:
        data = LegPickedUp(task_id=self.task_id, leg_id=leg_id, volunteer_id=self.volunteer_id)
        return build_event(data, source="/dispatcher", subject=self.task_id)[1]
