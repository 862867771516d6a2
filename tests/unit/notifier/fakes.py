"""In-memory stand-ins for the notifier's repository: handlers run against them without a database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from services.notifier.adapters.tables import (
    DeliveryAttemptRow,
    DeliveryReportRow,
    DeliveryRow,
    LegRow,
    TaskRow,
    WebhookEndpointRow,
)


@dataclass
class FakeRepository:
    tasks: dict[uuid.UUID, TaskRow] = field(default_factory=dict)
    legs: dict[uuid.UUID, LegRow] = field(default_factory=dict)
    reports: list[DeliveryReportRow] = field(default_factory=list)
    endpoints: dict[uuid.UUID, WebhookEndpointRow] = field(default_factory=dict)
    deliveries: dict[uuid.UUID, DeliveryRow] = field(default_factory=dict)
    attempts: list[DeliveryAttemptRow] = field(default_factory=list)
    flushed: int = 0

    async def flush(self) -> None:
        self.flushed += 1

    # --- confirmation records

    async def task_for_update(self, task_id: uuid.UUID) -> TaskRow | None:
        return self.tasks.get(task_id)

    async def legs_for_update(self, task_id: uuid.UUID) -> dict[uuid.UUID, LegRow]:
        return {leg.id: leg for leg in self.legs.values() if leg.task_id == task_id}

    async def unchecked_reports(self, task_id: uuid.UUID) -> list[DeliveryReportRow]:
        found = [r for r in self.reports if r.task_id == task_id and not r.checked]
        return sorted(found, key=lambda r: r.reported_at)

    # --- attempt records

    async def delivery_for_update(self, delivery_id: uuid.UUID) -> DeliveryRow | None:
        return self.deliveries.get(delivery_id)

    def add_attempt(self, attempt: DeliveryAttemptRow) -> None:
        self.attempts.append(attempt)

    async def disable_endpoint(self, endpoint_id: uuid.UUID, *, reason: str, now: datetime) -> None:
        endpoint = self.endpoints[endpoint_id]
        if endpoint.disabled_at is None:
            endpoint.disabled_at, endpoint.disabled_reason = now, reason

    async def end_pending_deliveries(
        self, endpoint_id: uuid.UUID, *, status: str, last_error: str, now: datetime
    ) -> None:
        for row in self.deliveries.values():
            if row.endpoint_id == endpoint_id and row.status == "pending":
                row.status, row.finished_at, row.last_error = status, now, last_error
