from __future__ import annotations

import uuid

from shared.auth import RateLimiter


def test_a_burst_is_allowed_then_the_caller_waits_for_the_steady_rate() -> None:
    limiter = RateLimiter(per_s=2.0, burst=3)
    caller = uuid.uuid4()
    assert [limiter.take(caller, now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take(caller, now=100.0)
    assert wait == 0.5
    assert limiter.take(caller, now=100.5) == 0.0


def test_callers_have_separate_budgets() -> None:
    limiter = RateLimiter(per_s=1.0, burst=1)
    first, second = uuid.uuid4(), uuid.uuid4()
    assert limiter.take(first, now=0.0) == 0.0
    assert limiter.take(first, now=0.0) > 0
    assert limiter.take(second, now=0.0) == 0.0


def test_a_request_that_read_the_clock_before_a_slower_one_does_not_drain_the_bucket() -> None:
    # Verification reads the clock, then awaits a token lookup: a request that read it earlier may
    # take from the bucket after one that read it later.
    limiter = RateLimiter(per_s=1000.0, burst=1000)
    caller = uuid.uuid4()
    assert limiter.take(caller, now=10.0) == 0.0
    assert limiter.take(caller, now=8.0) == 0.0
    assert limiter.take(caller, now=10.0) == 0.0
