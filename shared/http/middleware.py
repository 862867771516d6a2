"""The middleware every request passes: tracing, one log line and metrics, every error as a problem."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from shared.db import is_connection_error, is_transient_conflict
from shared.errors import COMMON_STATUSES, DomainError, ErrorStatuses, answer_for
from shared.events import current_actor, current_traceparent
from shared.http.parsing import MAX_BODY_BYTES
from shared.http.problems import ProblemError, problem_response
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger(__name__)

_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

View = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The service's table from domain errors to answers (shared.errors), set by create_base_app.
ERROR_STATUSES = web.AppKey("error_statuses", ErrorStatuses)


def _trace_from(request: web.Request) -> tuple[str, str]:
    """The caller's W3C traceparent if it sent a valid one, else a new one; with its trace id."""
    incoming = request.headers.get("traceparent", "").strip().lower()
    match = _TRACEPARENT.match(incoming)
    if match and match.group(1) != "0" * 32:
        return incoming, match.group(1)
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


def _try_again(what_happened: str) -> web.Response:
    """A 503 for a request that changed nothing and goes through if sent again in a moment."""
    return problem_response(
        503,
        "Service unavailable",
        f"{what_happened}; nothing was changed. Try again.",
        headers={"Retry-After": "1"},
    )


@web.middleware
async def request_middleware(request: web.Request, handler: View) -> web.StreamResponse:
    """One log line and metrics per request; problems for every error; no stack trace ever leaks."""
    started = time.perf_counter()
    traceparent, trace_id = _trace_from(request)
    request_id = request.headers.get("X-Request-Id", "")[:200] or trace_id
    token = current_traceparent.set(traceparent)
    # Requests on one keep-alive connection share a context: nobody inherits the last one's actor.
    actor_token = current_actor.set(None)
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    status = 500
    try:
        with structlog.contextvars.bound_contextvars(trace_id=trace_id, request_id=request_id):
            try:
                response = await handler(request)
            except ProblemError as exc:
                response = problem_response(
                    exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers
                )
            except DomainError as exc:
                answer = answer_for(exc, request.app.get(ERROR_STATUSES, COMMON_STATUSES))
                if answer is None:  # a rule with no answer at the edge is our bug, not the client's
                    log.exception("request.unmapped_domain_error", method=request.method, route=route)
                    response = problem_response(500, "Internal error", "Something went wrong on our side.")
                else:
                    response = problem_response(answer.status, answer.title, exc.message, errors=exc.errors)
            except web.HTTPRequestEntityTooLarge:
                response = problem_response(
                    413, "Payload too large", f"Request bodies are limited to {MAX_BODY_BYTES} bytes."
                )
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                # The refusal's own headers say how to recover (a 405's `Allow`); only its text body goes.
                kept = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
                response = problem_response(exc.status, exc.reason, exc.text or exc.reason, headers=kept)
            except (asyncio.CancelledError, ConnectionResetError):
                status = 499
                raise
            except Exception as exc:
                if is_connection_error(exc):
                    log.warning(
                        "request.database_unavailable", method=request.method, route=route, error=repr(exc)
                    )
                    response = _try_again("The database is unreachable for a moment")
                elif is_transient_conflict(exc):
                    # Rolled back whole; a lock order that lets two requests wait for each other
                    # is a bug to fix, but the caller loses nothing and may simply send it again.
                    log.warning(
                        "request.conflict_rolled_back", method=request.method, route=route, error=repr(exc)
                    )
                    response = _try_again("Another change to the same records came at the same moment")
                else:
                    log.exception("request.failed", method=request.method, route=route)
                    response = problem_response(500, "Internal error", "Something went wrong on our side.")
            status = response.status
            response.headers["X-Request-Id"] = request_id
            return response
    finally:
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
        HTTP_LATENCY.labels(route, request.method).observe(elapsed)
        if route not in ("/metrics", "/healthz", "/readyz"):
            log.info(
                "request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                trace_id=trace_id,
                request_id=request_id,
            )
        current_actor.reset(actor_token)
        current_traceparent.reset(token)
