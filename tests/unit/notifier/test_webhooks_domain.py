"""Signing, filters and the retry schedule of webhook deliveries."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifier.domain.retries import (
    AttemptDecision,
    backoff_delay,
    decide_after_attempt,
    parse_retry_after,
)
from services.notifier.domain.webhooks import endpoint_wants, filter_is_valid, new_secret, sign

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_new_secret_is_whsec_with_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_signature_verifies_with_the_reference_implementation_and_tamper_fails() -> None:
    secret = new_secret()
    body = b'{"type":"leg.confirmed","data":{"leg_id":"x"}}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id="msg_1", timestamp=timestamp, body=body),
    }
    Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"x", b"y"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_signature_matches_the_spec_example() -> None:
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body) == expected


@pytest.mark.parametrize(
    ("filters", "event_type", "wanted"),
    [
        (["leg.confirmed"], "leg.confirmed", True),
        (["leg.confirmed"], "task.completed", False),
        (["leg.*"], "leg.assigned", True),
        (["leg.*"], "task.completed", False),
        (["*"], "task.completed", True),
        (["*"], "task.submitted", False),
        (["*"], "leg.delivered", False),
    ],
)
def test_endpoint_receives_only_the_events_it_subscribed_to(
    filters: list[str], event_type: str, wanted: bool
) -> None:
    assert endpoint_wants(filters, event_type) is wanted


def test_unknown_event_filters_are_invalid() -> None:
    assert filter_is_valid("leg.confirmed") and filter_is_valid("task.*") and filter_is_valid("*")
    assert not filter_is_valid("leg.eaten") and not filter_is_valid("volunteer.*")


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base_s=30, max_s=6 * 3600, rng=rng) for n in range(1, 13)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(6 * 3600, 30 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert sum(delays) > 3 * 3600, "the default schedule spreads retries over hours"
    assert len({round(backoff_delay(3, base_s=30, max_s=3600), 6) for _ in range(20)}) > 1, "jittered"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120", now=NOW) == 120
    assert parse_retry_after("Sun, 29 Nov 2026 12:01:00 GMT", now=NOW) == 60
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


def _decide(
    status: int | None, *, attempt: int = 1, budget: int = 5, retry_after: str | None = None
) -> AttemptDecision:
    return decide_after_attempt(
        status_code=status,
        retry_after=retry_after,
        attempt=attempt,
        budget=budget,
        now=NOW,
        base_s=1,
        max_s=10,
    )


def test_success_gone_and_last_attempt() -> None:
    assert _decide(204).verdict == "succeeded"
    assert _decide(410).verdict == "gone"
    assert _decide(500, attempt=5, budget=5).verdict == "dead"
    assert _decide(None, attempt=5, budget=5).verdict == "dead"


def test_failures_are_retried_after_the_backoff() -> None:
    decision = _decide(500, attempt=2)
    assert decision.verdict == "retry" and decision.next_attempt_at is not None
    assert NOW + timedelta(seconds=1) <= decision.next_attempt_at <= NOW + timedelta(seconds=2)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_on_429_and_503(status: int) -> None:
    decision = _decide(status, retry_after="3600")
    assert decision.next_attempt_at == NOW + timedelta(seconds=3600)


def test_retry_after_is_ignored_on_other_statuses() -> None:
    decision = _decide(500, retry_after="3600")
    assert decision.next_attempt_at is not None and decision.next_attempt_at <= NOW + timedelta(seconds=1)
