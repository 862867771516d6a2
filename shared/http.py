"""HTTP plumbing every service uses: problem+json errors, request logging, parsing, health, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.json_schema import models_json_schema

from shared.db import is_connection_error
from shared.errors import COMMON_STATUSES, DomainError, ErrorStatuses, answer_for
from shared.events import current_traceparent
from shared.fields import describe_storable_text
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 256 * 1024
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

M = TypeVar("M", bound=BaseModel)
View = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The service's table from domain errors to answers (shared.errors), set by create_base_app.
ERROR_STATUSES = web.AppKey("error_statuses", ErrorStatuses)


class ProblemError(Exception):
    """An error a client caused or must hear about, answered as RFC 9457 problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_body(
    status: int, title: str, detail: str, *, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem as a JSON object: the body of a problem response, or a WebSocket message."""
    body: dict[str, Any] = {
        "type": f"https://errands.example/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = problem_body(status, title, detail, errors=errors)
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON, headers=headers)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Serialise pydantic models (and lists of them) or plain JSON values."""
    if isinstance(body, BaseModel):
        text = body.model_dump_json()
    else:
        text = json.dumps(body, default=_json_default)
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def storable_text(value: str) -> str:
    """`value` if PostgreSQL can store it as text or in JSONB: no NUL character, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's `\ud800` escapes decode to lone surrogates
        raise ValueError("must be valid Unicode text") from exc
    return value


class StorableModel(BaseModel):
    """A request body whose every string (and list of strings) survives PostgreSQL: bad text is a 422."""

    model_config = ConfigDict(json_schema_extra=describe_storable_text)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if isinstance(value, str):
            return storable_text(value)
        if isinstance(value, list):
            for element in value:
                if isinstance(element, str):
                    storable_text(element)
        return value


def _json_path(loc: Iterable[int | str]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validation_problem(exc: ValidationError, *, prefix: tuple[str, ...] = ()) -> ProblemError:
    errors = [
        {"field": _json_path((*prefix, *err["loc"])), "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    fields = ", ".join(e["field"] for e in errors[:5])
    return ProblemError(422, "Validation failed", f"Invalid fields: {fields}", errors=errors)


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body validated by `model`, or a problem naming what is wrong."""
    if request.body_exists and not is_json_media_type(request.content_type):
        # Text and forms are what a browser posts cross-site without a CORS preflight, and what
        # proxies and filters that trust the declared type pass unexamined: neither is read as JSON.
        raise ProblemError(
            415,
            "Unsupported media type",
            f"The body must be sent as application/json, not {request.content_type}.",
        )
    raw = await request.read()
    if not raw:
        raise ProblemError(400, "Bad request", "A JSON body is required.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(400, "Bad request", f"The body is not UTF-8 (byte {exc.start}).") from exc
    value = decode_json(text, what="body")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise validation_problem(exc) from exc


def is_json_media_type(media_type: str) -> bool:
    """`application/json` or a JSON-based `application/*+json` type; parameters already stripped."""
    media_type = media_type.strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def decode_json(text: str, *, what: str) -> Any:
    """`text` as a JSON value, or a 400 problem naming `what` (a request's body, a WebSocket message)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProblemError(400, "Bad request", f"The {what} is not valid JSON: {exc}.") from exc
    except ValueError as exc:  # e.g. an integer literal too long to convert
        raise ProblemError(400, "Bad request", f"The {what} is not acceptable JSON: {exc}.") from exc


def path_uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    """A UUID from the path; anything else is simply not found (404), like an id that does not exist."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError as exc:
        raise ProblemError(404, "Not found", f"No such {what}.") from exc


def parse_query(request: web.Request, model: type[M]) -> M:
    """Query parameters validated by `model`; repeated parameters keep their last value."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise ProblemError(400, "Bad request", "Invalid query parameters.", errors=errors) from exc


def _trace_from(request: web.Request) -> tuple[str, str]:
    """The caller's W3C traceparent if it sent a valid one, else a new one; with its trace id."""
    incoming = request.headers.get("traceparent", "").strip().lower()
    match = _TRACEPARENT.match(incoming)
    if match and match.group(1) != "0" * 32:
        return incoming, match.group(1)
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


@web.middleware
async def request_middleware(request: web.Request, handler: View) -> web.StreamResponse:
    """One log line and metrics per request; problems for every error; no stack trace ever leaks."""
    started = time.perf_counter()
    traceparent, trace_id = _trace_from(request)
    request_id = request.headers.get("X-Request-Id", "")[:200] or trace_id
    token = current_traceparent.set(traceparent)
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
                    response = problem_response(
                        503,
                        "Service unavailable",
                        "The database is unreachable for a moment; nothing was changed. Try again.",
                        headers={"Retry-After": "1"},
                    )
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
        current_traceparent.reset(token)


class _ProblemRequestHandler(RequestHandler):
    """Refusals aiohttp makes before any middleware runs (a request line or header over its size
    limits, a malformed request) answered as problem+json too, instead of aiohttp's text/plain."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if an answer already began
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        # Never echo the request back (it may carry a token); name only what kind of refusal it is.
        if status >= 500:
            detail = "Something went wrong on our side."
        else:
            detail = f"The request could not be read ({type(exc).__name__ if exc else phrase})."
        response = problem_response(status, phrase, detail)
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer even aiohttp's own parse errors as problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        return server


ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    roles: tuple[str, ...]
    query: type[BaseModel] | None
    headers: dict[str, dict[str, Any]]
    errors: tuple[int, ...] = ()
    empty: tuple[tuple[int, str], ...] = ()

    def error_statuses(self) -> list[int]:
        """The problem statuses this operation can answer, documented one by one in `/openapi.json`.

        Most follow from how it is registered: a token (401, 403, and 429 when throttled), a body (400,
        413, 415 when not sent as JSON, 422), a query or required header (400), a path id (404); every
        operation can answer 503 while the database is unreachable. `errors` adds what only the handler
        knows (e.g. 409).
        """
        statuses = {503, *self.errors}
        if self.roles:
            statuses |= {401, 403, 429}
        if self.body is not None:
            statuses |= {400, 413, 415, 422}
        if self.query is not None or self.headers:
            statuses.add(400)
        if re.search(r"{\w+}", self.path):
            statuses.add(404)
        return sorted(statuses)


def _problem_ref() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _problem_response(status: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"description": HTTPStatus(status).phrase, "content": _problem_ref()}
    if status in (429, 503):
        entry["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "required": status == 429,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return entry


@dataclass
class Api:
    """Routes registered with their models, so `/openapi.json` is generated from what validates requests."""

    title: str
    operations: list[Operation] = field(default_factory=list)
    routes: web.RouteTableDef = field(default_factory=web.RouteTableDef)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        roles: tuple[str, ...] = (),
        query: type[BaseModel] | None = None,
        headers: dict[str, dict[str, Any]] | None = None,
        errors: Iterable[int] = (),
        empty: dict[int, str] | None = None,
    ) -> Callable[[View], View]:
        """Register a view; `headers` maps a required request header's name to its JSON schema.

        `errors` names problem statuses the handler answers beyond those its registration implies
        (see `Operation.error_statuses`), such as 409; each is documented in `/openapi.json`. `empty`
        documents other answers without a body, by status and description (e.g. a long poll's 304).
        """

        def register(view: View) -> View:
            self.operations.append(
                Operation(
                    method,
                    path,
                    summary,
                    body,
                    response,
                    status,
                    roles,
                    query,
                    headers or {},
                    tuple(errors),
                    tuple((empty or {}).items()),
                )
            )
            self.routes.route(method, path)(view)
            return view

        return register

    def document(self) -> dict[str, Any]:
        models = {m for op in self.operations for m in (op.body, op.response) if m is not None}
        _, schema = models_json_schema(
            [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template="#/components/schemas/{model}",
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "responses": {
                    str(op.status): {"description": "Success"}
                    if op.response is None
                    else {
                        "description": "Success",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}
                            }
                        },
                    },
                    **{str(code): {"description": text} for code, text in op.empty},
                    **{str(code): _problem_response(code) for code in op.error_statuses()},
                    "default": {"description": "Problem", "content": _problem_ref()},
                },
            }
            if op.roles:
                entry["security"] = [{"bearer": []}]
                entry["x-roles"] = list(op.roles)
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
                    },
                }
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
                for name in re.findall(r"{(\w+)}", op.path)
            ]
            if op.query is not None:
                properties = op.query.model_json_schema()["properties"]
                for name, info in op.query.model_fields.items():
                    key = info.alias or name
                    params.append(
                        {
                            "name": key,
                            "in": "query",
                            "required": info.is_required(),
                            "schema": properties[key],
                        }
                    )
            for name, header_schema in op.headers.items():
                params.append({"name": name, "in": "header", "required": True, "schema": header_schema})
            if params:
                entry["parameters"] = params
            paths.setdefault(op.path, {})[op.method.lower()] = entry
        components = dict(schema.get("$defs", {}))
        components["Problem"] = {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        }
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": "1.0.0"},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


def create_base_app(
    *, api: Api, readiness: list[ReadinessCheck], error_statuses: ErrorStatuses = COMMON_STATUSES
) -> web.Application:
    """An application with the common middleware, body limit, and the four common endpoints.

    `error_statuses` is the service's one table from domain errors to HTTP answers.
    """
    app = web.Application(middlewares=[request_middleware], client_max_size=MAX_BODY_BYTES)
    app[ERROR_STATUSES] = error_statuses

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        failures: dict[str, str] = {}
        for check in readiness:
            try:
                await asyncio.wait_for(check(), timeout=3)
            except Exception as exc:
                failures[getattr(check, "__name__", "check")] = repr(exc)[:300]
        if failures:
            return problem_response(503, "Not ready", "; ".join(f"{k}: {v}" for k, v in failures.items()))
        return json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    document = api.document()

    async def openapi(_: web.Request) -> web.Response:
        return json_response(document)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_routes(api.routes)
    return app
