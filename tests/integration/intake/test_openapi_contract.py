"""Schemathesis against the live intake service: no 5xx, every answer matches /openapi.json, every
request it allows is accepted and every request it forbids refused.

The same helper drives every service with every role in tests/reliability/test_schemathesis.py;
this is intake's quick operator-only run.
"""

from __future__ import annotations

from schemathesis import GenerationMode

from tests.integration.intake.conftest import Operator
from tests.openapi_contract import operations, run_operation


def test_the_live_api_keeps_its_openapi_contract(intake: str, operator: Operator) -> None:
    found = operations(intake)
    assert set(found) >= {
        "POST /v1/tasks",
        "GET /v1/tasks",
        "GET /v1/tasks/{task_id}",
        "POST /v1/tasks/{task_id}/cancel",
        "POST /v1/recipients",
        "GET /v1/recipients",
        "GET /v1/recipients/{recipient_id}",
        "PATCH /v1/recipients/{recipient_id}",
        "POST /v1/recipients/{recipient_id}/renew",
        "DELETE /v1/recipients/{recipient_id}",
        "POST /v1/places",
        "GET /v1/places",
        "GET /v1/places/{place_id}",
        "PATCH /v1/places/{place_id}",
        "DELETE /v1/places/{place_id}",
        "POST /v1/schedules",
        "POST /v1/schedules/preview",
        "GET /v1/schedules",
        "GET /v1/schedules/{schedule_id}",
        "PATCH /v1/schedules/{schedule_id}",
        "POST /v1/schedules/{schedule_id}/pause",
        "POST /v1/schedules/{schedule_id}/resume",
        "POST /v1/schedules/{schedule_id}/skip",
        "POST /v1/schedules/{schedule_id}/end",
    }
    statuses: dict[str, set[int]] = {label: set() for label in found}
    for label, operation in found.items():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_operation(
                operation,
                base_url=intake,
                headers=operator.headers,
                statuses=statuses[label],
                max_examples=15,
                mode=mode,
            )
    # The run reached the handlers' success paths, not only their refusals.
    assert 201 in statuses["POST /v1/tasks"], statuses
    assert 200 in statuses["GET /v1/tasks"], statuses
    assert 201 in statuses["POST /v1/recipients"], statuses
    assert 201 in statuses["POST /v1/places"], statuses
    assert 200 in statuses["GET /v1/recipients"], statuses
    assert 201 in statuses["POST /v1/schedules"], statuses
    assert 200 in statuses["POST /v1/schedules/preview"], statuses
