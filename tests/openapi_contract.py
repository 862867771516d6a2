"""Schemathesis against a live service's `/openapi.json`: the helper every contract test uses.

Each generated request is sent with the caller's headers (a role's token, or none), and its answer
is validated with schemathesis' default checks plus the four conformance checks named below, and one
check of our own: every status is documented *explicitly* (the `default` problem response would
otherwise make `status_code_conformance` accept anything).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

# Always run, whatever schemathesis' default set holds in the installed version.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def operations(base_url: str) -> dict[str, Any]:
    """The live document's operations by `METHOD /path`; fails when the document is not valid OpenAPI."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    found: dict[str, Any] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document is a valid OpenAPI schema: {result}"
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def explicitly_documented(operation: Any, status: int) -> bool:
    responses: Mapping[str, Any] = operation.definition.raw.get("responses", {})
    return str(status) in responses or f"{str(status)[0]}XX" in responses


def run_operation(
    operation: Any,
    *,
    base_url: str,
    headers: Mapping[str, str],
    statuses: set[int],
    max_examples: int,
    checks: list[Any] | None = None,
    excluded: list[Any] | None = None,
    negative: bool = False,
) -> None:
    """Up to `max_examples` generated requests to one operation, each answer checked against the schema.

    `headers` replace whatever schemathesis generated for them; without an `Authorization` in
    `headers`, none is sent at all. A generated `Idempotency-Key` is sent as generated half the
    time and fresh otherwise, so both replays and new submissions happen. With `negative`, schema-
    violating requests are mixed in too, and must be refused with a 4xx (`negative_data_rejection`).
    """
    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    if negative:
        strategy = st.one_of(strategy, operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, fresh_key=st.booleans())
    def exercise(case: Any, fresh_key: bool) -> None:
        replaced = {"authorization", *(h.lower() for h in headers)}
        sent = {k: v for k, v in (case.headers or {}).items() if k.lower() not in replaced}
        sent.update(headers)
        mode = case.meta.generation.mode if case.meta is not None else GenerationMode.POSITIVE
        # A negative case may be negative *because* of its key: keep that one as generated.
        if fresh_key and "Idempotency-Key" in sent and mode is GenerationMode.POSITIVE:
            sent["Idempotency-Key"] = str(uuid.uuid4())
        case.headers = sent
        response = case.call(base_url=base_url, timeout=30)
        statuses.add(response.status_code)
        assert explicitly_documented(operation, response.status_code), (
            f"{operation.method.upper()} {operation.path} answered {response.status_code}, "
            f"which its document does not list: {response.text[:500]}"
        )
        case.validate_response(
            response,
            checks=checks,
            additional_checks=CHECKS,
            excluded_checks=excluded,
            headers=sent,
            transport_kwargs={"base_url": base_url, "timeout": 30},
        )

    exercise()
