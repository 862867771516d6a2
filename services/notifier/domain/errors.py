"""What can go wrong in the notifier, in its own words; the HTTP edge says it its way."""

from __future__ import annotations

from shared.errors import Conflict, Invalid, NotFound


class WebhookNotFound(NotFound):
    """No live webhook endpoint has this id in the caller's organisation."""

    def __init__(self) -> None:
        super().__init__("No such webhook.")


class DeliveryNotFound(NotFound):
    """No delivery has this id for this endpoint in the caller's organisation."""

    def __init__(self) -> None:
        super().__init__("No such delivery.")


class WebhookDisabled(Conflict):
    """The endpoint was disabled (it answered 410 Gone); nothing is sent to it any more."""

    def __init__(self) -> None:
        super().__init__("The webhook is disabled; register its URL again to resume.")


class UrlNotPublic(Invalid):
    """A webhook URL resolves to a private, loopback or link-local address."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "Webhook URLs must resolve to public addresses.",
            errors=[{"field": "$.url", "message": reason, "type": "url_not_public"}],
        )
