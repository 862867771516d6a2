"""Routes registered with their models, and the OpenAPI document generated from them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.http.middleware import View
from shared.http.problems import PROBLEM_JSON


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
    # A body that is not JSON (a photo): the media types it may be sent as, each read as raw bytes.
    raw_body: tuple[str, ...] = ()
    # An answer that is not JSON (a photo's bytes): the media types it may come as.
    raw_response: tuple[str, ...] = ()

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
        if self.raw_body:
            statuses |= {413, 415, 422}
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


def _raw_success(media_types: tuple[str, ...]) -> dict[str, Any]:
    if not media_types:
        return {"description": "Success"}
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"description": "Success", "content": {media_type: binary for media_type in media_types}}


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
        raw_body: Iterable[str] = (),
        raw_response: Iterable[str] = (),
    ) -> Callable[[View], View]:
        """Register a view; `headers` maps a required request header's name to its JSON schema.

        `errors` names problem statuses the handler answers beyond those its registration implies
        (see `Operation.error_statuses`), such as 409; each is documented in `/openapi.json`. `empty`
        documents other answers without a body, by status and description (e.g. a long poll's 304).
        `raw_body` names the media types of a body read as bytes rather than JSON (an image upload),
        `raw_response` those of an answer that is bytes (the image).
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
                    tuple(raw_body),
                    tuple(raw_response),
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
                    str(op.status): _raw_success(op.raw_response)
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
                # A bearer token, or a staff session's cookie (then POST/PUT/PATCH/DELETE need X-CSRF-Token).
                entry["security"] = (
                    [{"bearer": []}] if "volunteer" in op.roles else [{"bearer": []}, {"session": []}]
                )
                entry["x-roles"] = list(op.roles)
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
                    },
                }
            if op.raw_body:
                entry["requestBody"] = {
                    "required": True,
                    "content": {
                        media_type: {"schema": {"type": "string", "format": "binary"}}
                        for media_type in op.raw_body
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
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "session": {
                        "type": "apiKey",
                        "in": "cookie",
                        "name": "errands_session",
                        "description": "Set by POST /v1/sessions; changes also need the X-CSRF-Token header.",
                    },
                },
            },
        }
