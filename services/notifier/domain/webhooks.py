"""Webhook decisions: secrets, Standard Webhooks signatures, event filters, retry schedule.

No IO here; the worker and the HTTP adapter act on what these functions decide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal
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


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): doubling, capped, equal jitter."""
    ceiling = min(max_s, base_s * 2.0 ** (attempt - 1))
    jitter: float = (rng or random.Random()).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds the receiver asked us to wait (delta-seconds or HTTP-date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


_MAX_RETRY_AFTER_S = 24 * 3600.0

Verdict = Literal["succeeded", "retry", "dead", "gone"]


@dataclass(frozen=True, slots=True)
class AttemptDecision:
    verdict: Verdict
    next_attempt_at: datetime | None = None


def decide_after_attempt(
    *,
    status_code: int | None,
    retry_after: str | None,
    attempt: int,
    budget: int,
    now: datetime,
    base_s: float,
    max_s: float,
    rng: random.Random | None = None,
) -> AttemptDecision:
    """What follows an attempt: done on 2xx, endpoint gone on 410, else retry until the budget is spent.

    `status_code` None means no answer (timeout, refused connection, blocked address).
    A 429 or 503 with `Retry-After` is retried no earlier than asked (a day at most).
    """
    if status_code is not None and 200 <= status_code < 300:
        return AttemptDecision("succeeded")
    if status_code == 410:
        return AttemptDecision("gone")
    if attempt >= budget:
        return AttemptDecision("dead")
    delay = backoff_delay(attempt, base_s=base_s, max_s=max_s, rng=rng)
    if status_code in (429, 503):
        asked = parse_retry_after(retry_after, now=now)
        if asked is not None:
            delay = max(delay, min(asked, _MAX_RETRY_AFTER_S))
    return AttemptDecision("retry", now + timedelta(seconds=delay))
