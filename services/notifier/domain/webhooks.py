"""Webhook decisions: secrets, Standard Webhooks signatures, event filters, URL redaction.

No IO here; the worker and the HTTP adapter act on what these functions decide. When a delivery is
tried again is `retries.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import SplitResult, urlsplit

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret

# Events an organisation may subscribe to. `task.submitted` and `leg.delivered` stay inside:
# the first carries sealed personal data, the second a code hash, and neither tells a partner more
# than the events that follow them.
WEBHOOK_EVENT_TYPES = frozenset(
    {
        "task.cancelled",
        "task.escalated",
        "leg.assigned",
        "leg.picked_up",
        "leg.problem_reported",
        "leg.decided",
        "leg.failed",
        "leg.confirmed",
        "leg.confirmation_failed",
        "task.completed",
        "notification.sent",
        "notification.failed",
    }
)


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    message = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


# Every filter `filter_is_valid` accepts, so `/openapi.json` can list them.
WEBHOOK_EVENT_FILTERS = (
    "*",
    *sorted({f"{t.split('.')[0]}.*" for t in WEBHOOK_EVENT_TYPES}),
    *sorted(WEBHOOK_EVENT_TYPES),
)


def filter_is_valid(pattern: str) -> bool:
    """An event filter is a subscribable type, `*`, or a prefix wildcard such as `leg.*`."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        return any(t.startswith(prefix) for t in WEBHOOK_EVENT_TYPES)
    return pattern in WEBHOOK_EVENT_TYPES


def endpoint_wants(filters: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed with `filters` receives events of `event_type`."""
    if event_type not in WEBHOOK_EVENT_TYPES:
        return False
    for pattern in filters:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def redact_url(url: str) -> str:
    """`url` as readers outside its organisation see it: the origin, and `***` for anything else.

    User info, path, query and fragment may all carry credentials (Slack-style hooks keep theirs in
    the path), so none of them is shown.

    `https://user:pw@hooks.example.org/in/T0K3N?sig=abc` becomes `https://***@hooks.example.org/***`.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if parts.username is not None or parts.password is not None else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return SplitResult(parts.scheme, netloc, "/***" if hidden else parts.path, "", "").geturl()
