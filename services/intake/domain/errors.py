"""What can go wrong in intake, in its own words; the HTTP edge and the command line say it their way."""

from __future__ import annotations

from shared.errors import Conflict, Invalid, NotFound


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
