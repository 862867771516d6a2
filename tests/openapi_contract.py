"""Schemathesis against a live service's `/openapi.json`: the helper every contract test uses.

Each generated request is sent with the caller's headers (a role's token, or none), and its answer
is validated with schemathesis' default checks plus the conformance checks named below, and one
check of our own: every status is documented *explicitly* (the `default` problem response would
otherwise make `status_code_conformance` accept anything). In positive mode every request the
document allows must be accepted (`positive_data_acceptance`), in negative mode every request it
forbids refused (`negative_data_rejection`): the document is exactly as strict as the service.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

# Always run, whatever schemathesis' default set holds in the installed version.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# The refusals of a well-formed request that no static schema can foresee, each documented: a
# deadline already past, an Idempotency-Key replayed with another body, a set-password link that is
# unknown, used or expired, a token given two owners, and a person added by an admin token of no
# organisation without saying which. (A 404 for an unknown id
# and a 409 for a conflict are allowed by `positive_data_acceptance` itself.)
SEMANTIC_REFUSALS = {
    (422, "$.deliver_by", "Value error, deliver_by must be in the future"),
    (422, "$.task.deliver_by", "Value error, deliver_by must be in the future"),  # a schedule's template
    (422, "header:Idempotency-Key", "already used with another body"),
    (422, "$.token", "not a valid set-password link"),
    (422, "$.organisation_id", "required for an admin token of no organisation"),
}
# Time ranges, on whichever field: a date-time's range is stated in the document (`formatMinimum`,
# `formatMaximum`, the description) in keywords generators do not read.
SEMANTIC_MESSAGES = {
    # A record a stop names that this organisation does not have, and an address with no geocoder
    # configured to look it up (services/intake/domain/errors.py).
    (422, "no such recipient in this organisation"),
    (422, "no such place in this organisation"),
    (422, "no coordinates, and no geocoder is configured to find them: give lat and lon"),
    (422, "Value error, time must be in the years 2000 to 2100"),
    (400, "Value error, time must be in the years 2000 to 2100"),  # the same, in a query (GET /v1/audit)
    (400, "Value error, date must be in the years 2000 to 2100"),  # a report's day (GET /v1/reports/daily)
    (422, "Value error, time must be at most 1 day ago"),
    (422, "Value error, time must be at most 5 minutes ahead"),
    (422, "Value error, name either a person or a service, not both"),
    # A volunteer's `occurred_at` outside the default VOLUNTEER_ACTION_MAX_AGE_S / _MAX_SKEW_S.
    (422, "time must be at most 86400 seconds ago"),
    (422, "time must be at most 300 seconds ahead"),
    # A schedule's recurrence rule, zone and local start (services/intake/domain/schedules.py): what
    # RFC 5545 allows, an IANA zone and a calendar date are beyond a pattern.
    (422, "not an RFC 5545 recurrence rule"),
    (422, "occurrences closer than 10 minutes are refused"),
    (422, "the rule has no occurrence"),
    (422, "not an IANA time zone"),
    (422, "Value error, not a local date-time in the years 2000 to 2099, without an offset"),
    # An erasure names one person: by phone (at least 5 digits) or by e-mail, not both, not neither.
    (422, "Value error, give either phone or email"),
    (422, "Value error, phone must have at least 5 digits"),
}


# A plain GET of a WebSocket route: answered 426 with the upgrade it needs, which no HTTP client
# generated from an OpenAPI document can perform.
UPGRADE_REQUIRED = 426


def _semantic_refusal(response: Any) -> bool:
    if response.status_code == UPGRADE_REQUIRED:
        return True
    try:
        errors = json.loads(response.text).get("errors") or []
    except (ValueError, AttributeError):
        return False
    found = {(response.status_code, e.get("field"), e.get("message")) for e in errors}
    return bool(found) and all(
        refusal in SEMANTIC_REFUSALS or (status, message) in SEMANTIC_MESSAGES
        for refusal in found
        for status, _, message in [refusal]
    )


def accepts_valid_requests(ctx: Any, response: Any, case: Any) -> bool | None:
    """`positive_data_acceptance`, but for the documented refusals in SEMANTIC_REFUSALS."""
    if _semantic_refusal(response):
        return None
    verdict: bool | None = positive_data_acceptance(ctx, response, case)
    return verdict


MODE_CHECKS = {
    GenerationMode.POSITIVE: [accepts_valid_requests],
    GenerationMode.NEGATIVE: [negative_data_rejection],
}


def stops_at_coordinates(case: Any) -> None:
    """A stop takes one of several forms (coordinates, a saved place, a recipient, an address); this
    run has no records and no geocoder, so only the coordinates form can succeed: half the generated
    tasks are rewritten to it, which the document allows as well."""
    _at_coordinates(case.body)


def _at_coordinates(body: Any) -> None:
    if not isinstance(body, dict):
        return
    for stop in [body.get("pickup"), *(body.get("dropoffs") or [])]:
        if isinstance(stop, dict):
            stop.pop("place_id", None)
            stop.pop("recipient_id", None)
            stop.setdefault("lat", 10.0)
            stop.setdefault("lon", 10.0)


def a_valid_schedule(case: Any) -> None:
    """A schedule's rule and zone are free text no generator will make valid: half the generated
    schedules get a daily rule in a real zone, and a task at coordinates."""
    if not isinstance(case.body, dict):
        return
    if "rrule" in case.body or case.method == "POST":
        case.body["rrule"] = "FREQ=DAILY"
    if "time_zone" in case.body:
        case.body["time_zone"] = "Asia/Shanghai"
    task = case.body.get("task")
    if isinstance(task, dict):
        task.pop("deliver_by", None)
        _at_coordinates(task)


# Operations whose positive cases are half rewritten by default (see `run_operation`'s `narrow`).
NARROWING: dict[tuple[str, str], Callable[[Any], None]] = {
    ("POST", "/v1/tasks"): stops_at_coordinates,
    ("POST", "/v1/schedules"): a_valid_schedule,
    ("POST", "/v1/schedules/preview"): a_valid_schedule,
    ("PATCH", "/v1/schedules/{schedule_id}"): a_valid_schedule,
}


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
    mode: GenerationMode = GenerationMode.POSITIVE,
    narrow: Callable[[Any], None] | None = None,
) -> None:
    """Up to `max_examples` generated requests to one operation, each answer checked against the schema.

    `headers` replace whatever schemathesis generated for them; without an `Authorization` in
    `headers`, none is sent at all (so a negative case whose only fault is its `Authorization` is
    not one, and is skipped). A generated `Idempotency-Key` is sent as generated half the time and
    fresh otherwise, so both replays and new submissions happen. `mode` says whether the requests
    follow the document (and must be accepted) or break it (and must be refused). `narrow`, when
    given, rewrites half the positive cases into another form the document allows (one the service
    can carry out without records the run does not have), so the run reaches success paths too.
    """
    raw = operation.definition.raw
    if narrow is None:
        narrow = NARROWING.get((operation.method.upper(), operation.path))
    if mode is GenerationMode.NEGATIVE and not raw.get("parameters") and "requestBody" not in raw:
        return  # nothing to get wrong but the token, which is the caller's
    strategy = operation.as_strategy(generation_mode=mode)
    replaced = {"authorization", *(h.lower() for h in headers)}

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, fresh_key=st.booleans(), narrowed=st.booleans())
    def exercise(case: Any, fresh_key: bool, narrowed: bool) -> None:
        if narrow is not None and narrowed and mode is GenerationMode.POSITIVE:
            narrow(case)
        mutations = case.meta.phase.data.mutations if case.meta is not None else ()
        if mode is GenerationMode.NEGATIVE and all(
            (m.parameter or "").lower() in replaced for m in mutations
        ):
            reject()
        sent = {k: v for k, v in (case.headers or {}).items() if k.lower() not in replaced}
        sent.update(headers)
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
            additional_checks=[*CHECKS, *MODE_CHECKS[mode]],
            excluded_checks=[positive_data_acceptance],  # in its place: accepts_valid_requests
            headers=sent,
            transport_kwargs={"base_url": base_url, "timeout": 30},
        )

    exercise()
