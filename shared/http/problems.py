"""Errors a client caused or must hear about, answered as RFC 9457 problem+json."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

PROBLEM_JSON = "application/problem+json"


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
