"""HTTP plumbing every service uses: problem+json errors, request parsing and logging, health, OpenAPI.

Import from here; the modules are split by what they hold:

- `problems`: `ProblemError` and problem+json bodies and responses;
- `responses`: JSON answers;
- `parsing`: bodies, queries and path ids, validated or refused as problems;
- `middleware`: tracing, logging, metrics and error answers around every request;
- `openapi`: `Api`, the routes registered with their models, and the document made from them;
- `app`: `create_base_app`, with the health, readiness, metrics and OpenAPI endpoints;
- `connection`: aiohttp's own refusals on a connection, as problems (`ProblemAppRunner`).
"""

from shared.http.app import ReadinessCheck, create_base_app
from shared.http.connection import ProblemAppRunner
from shared.http.middleware import ERROR_STATUSES, View, request_middleware
from shared.http.openapi import Api, Operation
from shared.http.parsing import (
    MAX_BODY_BYTES,
    StorableModel,
    decode_json,
    is_json_media_type,
    parse_body,
    parse_query,
    path_uuid,
    storable_text,
)
from shared.http.problems import (
    PROBLEM_JSON,
    ProblemError,
    problem_body,
    problem_response,
    validation_problem,
)
from shared.http.responses import json_response

__all__ = [
    "ERROR_STATUSES",
    "MAX_BODY_BYTES",
    "PROBLEM_JSON",
    "Api",
    "Operation",
    "ProblemAppRunner",
    "ProblemError",
    "ReadinessCheck",
    "StorableModel",
    "View",
    "create_base_app",
    "decode_json",
    "is_json_media_type",
    "json_response",
    "parse_body",
    "parse_query",
    "path_uuid",
    "problem_body",
    "problem_response",
    "request_middleware",
    "storable_text",
    "validation_problem",
]
