"""What of a task is personal data, when it may be erased, and what is left once it is. No IO here.

Erased: the pickup contact's name and phone; each recipient's name, phone, e-mail, address and
notes; the task's notes. Kept: times, statuses,
coordinates (a district and a distance need them), kinds, priorities, items and outcomes, so every
report still works.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.intake.domain.model import ENDED_LEG, FINISHED_TASK

PICKUP_FIELDS = ("contact_name", "contact_phone")
DROPOFF_FIELDS = ("recipient_name", "recipient_phone", "recipient_email", "address", "notes")
TASK_FIELDS = ("notes",)


def has_ended(task_status: str, leg_statuses: Iterable[str]) -> bool:
    """A task is over when it is and every leg is: a cancelled task's leg in hand is still going."""
    return task_status in FINISHED_TASK and all(s in ENDED_LEG for s in leg_statuses)


@dataclass(frozen=True)
class Erased:
    request: dict[str, Any]
    fields: int


def erase_request(request: dict[str, Any]) -> Erased:
    """The request as submitted, with every personal field emptied, and how many held something."""
    fields = 0

    def emptied(part: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        nonlocal fields
        fields += sum(1 for name in names if part.get(name))
        return {**part, **dict.fromkeys((name for name in names if name in part), None)}

    erased = emptied(request, TASK_FIELDS)
    if isinstance(request.get("pickup"), dict):
        erased["pickup"] = emptied(request["pickup"], PICKUP_FIELDS)
    erased["dropoffs"] = [emptied(drop, DROPOFF_FIELDS) for drop in request.get("dropoffs") or []]
    return Erased(request=erased, fields=fields)
