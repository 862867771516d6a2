"""What of a leg's details is personal data, and what is left once it is erased. No IO here.

The volunteer saw the pickup contact and the recipient while carrying the leg; once the leg is over
and the retention has passed (or an admin erases the person), those go. Coordinates, items, kind,
priority and times stay, so distances, districts and reports still work.
"""

from __future__ import annotations

from typing import Any

from shared.events import DropoffData, PickupData

# Free text of the task as a whole, when the details carry it.
TASK_FIELDS = ("notes",)


def erase_details(details: dict[str, Any]) -> dict[str, Any]:
    """A leg's details without the personal fields of its pickup, its drop-off and its task."""
    erased = {**details, **dict.fromkeys((name for name in TASK_FIELDS if name in details), None)}
    for part, personal in (("pickup", PickupData.PERSONAL), ("dropoff", DropoffData.PERSONAL)):
        if isinstance(details.get(part), dict):
            erased[part] = {
                **details[part],
                **dict.fromkeys((k for k in personal if k in details[part]), None),
            }
    return erased
