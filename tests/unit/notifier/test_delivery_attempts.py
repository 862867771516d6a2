"""What a webhook delivery attempt leaves behind: the attempt, and the next one scheduled or not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.notifier.adapters.tables import DeliveryRow, WebhookEndpointRow
from services.notifier.adapters.webhook_sender import PostResult
from services.notifier.service_layer.delivery import record_attempt
from tests.unit.notifier.fakes import FakeRepository

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BASE_S, MAX_S = 10.0, 600.0


def _delivery(repository: FakeRepository, *, attempts: int = 0, budget: int = 5) -> DeliveryRow:
    endpoint = WebhookEndpointRow(
        id=uuid.uuid4(), organisation_id=uuid.uuid4(), url="https://hooks.example.org/"
    )
    repository.endpoints[endpoint.id] = endpoint
    row = DeliveryRow(
        id=uuid.uuid4(),
        organisation_id=endpoint.organisation_id,
        endpoint_id=endpoint.id,
        task_id=uuid.uuid4(),
        status="pending",
        attempts=attempts,
        attempt_budget=budget,
        next_attempt_at=NOW,
    )
    repository.deliveries[row.id] = row
    return row


async def _attempt(repository: FakeRepository, row: DeliveryRow, result: PostResult) -> str | None:
    outcome = await record_attempt(
        repository, row.id, started_at=NOW, result=result, now=NOW, base_s=BASE_S, max_s=MAX_S
    )
    return outcome[0] if outcome else None


def _answer(status_code: int | None, *, retry_after: str | None = None) -> PostResult:
    error = None if status_code is not None and status_code < 300 else f"HTTP {status_code}"
    return PostResult(status_code=status_code, retry_after=retry_after, latency_ms=12.0, error=error)


async def test_a_failed_attempt_schedules_the_next_within_the_backoff_window() -> None:
    repository = FakeRepository()
    row = _delivery(repository)

    assert await _attempt(repository, row, _answer(500)) == "webhook.retry_scheduled"

    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 500")
    assert NOW + timedelta(seconds=BASE_S / 2) <= row.next_attempt_at <= NOW + timedelta(seconds=BASE_S)
    assert [(a.attempt, a.status_code) for a in repository.attempts] == [(1, 500)]


async def test_retry_after_on_503_pushes_the_next_attempt_back() -> None:
    repository = FakeRepository()
    row = _delivery(repository)

    await _attempt(repository, row, _answer(503, retry_after="3600"))

    assert row.next_attempt_at >= NOW + timedelta(seconds=3600)


async def test_the_last_attempt_of_the_budget_leaves_the_delivery_dead() -> None:
    repository = FakeRepository()
    row = _delivery(repository, attempts=4, budget=5)

    assert await _attempt(repository, row, _answer(None)) == "webhook.dead_lettered"

    assert (row.status, row.attempts, row.finished_at) == ("dead", 5, NOW)


async def test_success_finishes_the_delivery() -> None:
    repository = FakeRepository()
    row = _delivery(repository)

    assert await _attempt(repository, row, _answer(204)) == "webhook.delivered"

    assert (row.status, row.finished_at, row.last_error) == ("succeeded", NOW, None)


async def test_410_disables_the_endpoint_and_ends_its_other_pending_deliveries() -> None:
    repository = FakeRepository()
    row = _delivery(repository)
    assert row.endpoint_id is not None
    other = DeliveryRow(
        id=uuid.uuid4(), endpoint_id=row.endpoint_id, status="pending", attempts=0, attempt_budget=5
    )
    repository.deliveries[other.id] = other

    assert await _attempt(repository, row, _answer(410)) == "webhook.endpoint_gone"

    assert repository.endpoints[row.endpoint_id].disabled_reason == "HTTP 410 Gone"
    assert (row.status, row.last_error) == ("dead", "endpoint gone (HTTP 410); endpoint disabled")
    assert (other.status, other.last_error) == ("dead", "endpoint disabled: HTTP 410 Gone")


async def test_an_attempt_on_a_delivery_no_longer_pending_is_only_recorded() -> None:
    repository = FakeRepository()
    row = _delivery(repository)
    row.status = "cancelled"

    assert await _attempt(repository, row, _answer(500)) is None

    assert row.status == "cancelled" and len(repository.attempts) == 1
