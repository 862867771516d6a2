"""When a delivery that failed is tried again: the backoff, `Retry-After`, the attempt budget.

Webhook and callback deliveries, operators' manual retries and messages to recipients all follow
these rules. No IO here; the delivery worker and the webhook handlers apply what they decide.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal


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


def manual_retry_budget(attempts: int) -> int:
    """An operator's retry grants exactly one attempt more than have been made, sent at once."""
    return attempts + 1


def next_message_attempt(
    *, attempts: int, max_attempts: int, now: datetime, base_s: float, max_s: float
) -> datetime | None:
    """When a recipient message that failed `attempts` times is tried again; None once it has failed."""
    if attempts >= max_attempts:
        return None
    return now + timedelta(seconds=backoff_delay(attempts, base_s=base_s, max_s=max_s))
