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


class PersonHasTasksInProgress(Conflict):
    """A person's data cannot be erased while a task of theirs is still going."""

    def __init__(self, task_ids: list[str]) -> None:
        super().__init__(
            f"{len(task_ids)} task(s) naming this person are still in progress: finish or cancel them "
            "first, then erase again.",
            errors=[{"field": "task", "message": task_id} for task_id in task_ids],
        )
