"""What can go wrong in intake, in its own words; the HTTP edge and the command line say it their way."""

from __future__ import annotations

from shared.errors import Conflict, DomainError, Invalid, NotFound


class OrganisationNotFound(NotFound):
    """No organisation has this id."""


class NotACrossOrganisationRole(Invalid):
    """Only ops and admin tokens act across organisations."""


class TokenNotFound(NotFound):
    """No token has this id."""

    def __init__(self) -> None:
        super().__init__("No such token.")


class TaskNotFound(NotFound):
    """No task has this id, or it belongs to another organisation (the two look the same)."""

    def __init__(self) -> None:
        super().__init__("No such task.")


class TaskAlreadyCompleted(Conflict):
    """A completed task can no longer be cancelled."""

    def __init__(self) -> None:
        super().__init__("The task is already completed and can no longer be cancelled.")


class PersonHasTasksInProgress(Conflict):
    """A person's data cannot be erased while a task of theirs is still going."""

    def __init__(self, task_ids: list[str]) -> None:
        super().__init__(
            f"{len(task_ids)} task(s) naming this person are still in progress: finish or cancel them "
            "first, then erase again.",
            errors=[{"field": "task", "message": task_id} for task_id in task_ids],
        )


class RecipientNotFound(NotFound):
    """No recipient has this id in the caller's organisation (another's looks the same)."""

    def __init__(self) -> None:
        super().__init__("No such recipient.")


class PlaceNotFound(NotFound):
    """No saved place has this id in the caller's organisation (another's looks the same)."""

    def __init__(self) -> None:
        super().__init__("No such place.")


# The messages a client sees in `errors[].message`; the OpenAPI contract test knows them as refusals
# of well-formed requests that no schema can foresee.
UNKNOWN_RECIPIENT = "no such recipient in this organisation"
UNKNOWN_PLACE = "no such place in this organisation"
ARCHIVED_PLACE = "this place is archived"
NO_GEOCODER = "no coordinates, and no geocoder is configured to find them: give lat and lon"
ADDRESS_NOT_FOUND = "the geocoder found no such address: give lat and lon"


class UnknownReference(Invalid):
    """A pickup or drop-off names a recipient or place this organisation does not have."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}.", errors=[{"field": field, "message": message}])


class LocationMissing(Invalid):
    """A stop or record has no coordinates and none can be found: `field` says what to give."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"{field}: {message}.", errors=[{"field": field, "message": message, "type": "location_missing"}]
        )


class GeocoderUnavailable(DomainError):
    """The configured geocoder did not answer in time or answered with an error: worth a retry."""

    def __init__(self) -> None:
        super().__init__("The geocoder is unavailable for a moment; nothing was changed. Try again.")


class PersonNotFound(NotFound):
    """No person has this id in the caller's organisation (another organisation's look the same)."""

    def __init__(self) -> None:
        super().__init__("No such person.")


class EmailTaken(Conflict):
    """Another person already logs in with this e-mail address."""

    def __init__(self) -> None:
        super().__init__(
            "Another person already has this e-mail address.",
            errors=[{"field": "$.email", "message": "already in use"}],
        )


class SetupLinkInvalid(Invalid):
    """The set-password link is unknown, used already, expired, or its person is disabled."""

    def __init__(self) -> None:
        super().__init__(
            "This set-password link is not valid (used, expired or replaced); ask an admin for a new one.",
            errors=[{"field": "$.token", "message": "not a valid set-password link"}],
        )


class WrongCredentials(Exception):
    """Wrong e-mail or password: answered 401 at the edge, counted by the login throttle."""


class LoginThrottled(Exception):
    """Too many recent wrong passwords for this account or address: wait `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class OrganisationRequired(Invalid):
    """An admin token of no organisation must say which organisation it acts in."""


class ScheduleNotFound(NotFound):
    """No schedule has this id in the caller's organisation (another's looks the same)."""

    def __init__(self) -> None:
        super().__init__("No such schedule.")


class ScheduleEnded(Conflict):
    """An ended schedule cannot be changed, paused, resumed or skipped."""

    def __init__(self) -> None:
        super().__init__("The schedule has ended; save a new one instead.")


class ScheduleRuleInvalid(Invalid):
    """A schedule's rule or zone that no schema can check: not RFC 5545, too frequent, never occurs."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}.", errors=[{"field": field, "message": message}])
