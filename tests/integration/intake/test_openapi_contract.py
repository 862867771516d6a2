"""Schemathesis against the live intake service: no 5xx, and every answer matches /openapi.json."""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from tests.integration.intake.conftest import Operator

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def run_operation(operation: Any, *, intake: str, operator: Operator, statuses: set[int]) -> None:
    """Up to 25 generated requests to one operation, each response checked against the schema."""

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), fresh_key=st.booleans())
    def exercise(case: Any, fresh_key: bool) -> None:
        headers = dict(operator.headers)
        if fresh_key:  # otherwise the generated Idempotency-Key is sent as generated
            headers["Idempotency-Key"] = str(uuid.uuid4())
        response = case.call(base_url=intake, headers=headers, timeout=10)
        statuses.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    exercise()


def test_the_live_api_keeps_its_openapi_contract(intake: str, operator: Operator) -> None:
    schema = schemathesis.openapi.from_url(f"{intake}/openapi.json")
    operations: dict[str, Any] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document is a valid OpenAPI schema: {result}"
        operation = result.ok()
        operations[f"{operation.method.upper()} {operation.path}"] = operation
    assert set(operations) >= {
        "POST /v1/tasks",
        "GET /v1/tasks",
        "GET /v1/tasks/{task_id}",
        "POST /v1/tasks/{task_id}/cancel",
    }
    statuses: dict[str, set[int]] = {label: set() for label in operations}
    for label, operation in operations.items():
        run_operation(operation, intake=intake, operator=operator, statuses=statuses[label])
    # The run reached the handlers' success paths, not only their refusals.
    assert 201 in statuses["POST /v1/tasks"], statuses
    assert 200 in statuses["GET /v1/tasks"], statuses
