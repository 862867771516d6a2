"""What can go wrong in a service's domain, apart from how any one edge (HTTP, the command line) says it.

Each service's `domain/errors.py` subclasses `DomainError` in its own words (`OfferClosed`,
`TaskNotFound`, ...); its HTTP edge maps each class to a status in one table (`ErrorStatuses`), and
the command line prints the message and exits non-zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class DomainError(Exception):
    """A request the domain's rules refuse. `message` says why, in words a person can act on."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Which fields are wrong, when the refusal is about input: [{"field": "$.x", "message": ...}].
        self.errors = errors


class NotFound(DomainError):
    """The thing asked for does not exist, or belongs to another organisation (the two look the same)."""


class Conflict(DomainError):
    """The thing exists, but its state does not allow what was asked."""


class Invalid(DomainError):
    """The request is well-formed but breaks a rule of the domain."""


# Any service that takes an Idempotency-Key refuses these alike.
class IdempotencyKeyInFlight(Conflict):
    """The first request with this Idempotency-Key has not finished yet."""

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed.")


class IdempotencyKeyReused(Invalid):
    """This Idempotency-Key was already used with another request body."""

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was used with a different request body.",
            errors=[{"field": "header:Idempotency-Key", "message": "already used with another body"}],
        )


@dataclass(frozen=True)
class Answer:
    """How the HTTP edge answers a domain error: a status and the problem's title."""

    status: int
    title: str


ErrorStatuses = Mapping[type[DomainError], Answer]

# Every service's table starts from these; a service adds its own classes where they answer otherwise.
COMMON_STATUSES: dict[type[DomainError], Answer] = {
    NotFound: Answer(404, "Not found"),
    Conflict: Answer(409, "Conflict"),
    Invalid: Answer(422, "Validation failed"),
    IdempotencyKeyReused: Answer(422, "Idempotency key reused"),
}


def answer_for(error: DomainError, statuses: ErrorStatuses) -> Answer | None:
    """The answer for `error`: its own class's, else its nearest base class's that the table has."""
    for cls in type(error).__mro__:
        if cls in statuses:
            return statuses[cls]
    return None
