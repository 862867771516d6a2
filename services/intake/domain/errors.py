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
