"""Reading a request: its JSON body, query and path, each validated or refused as a problem."""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from shared.fields import describe_storable_text
from shared.http.problems import ProblemError, validation_problem

MAX_BODY_BYTES = 256 * 1024

M = TypeVar("M", bound=BaseModel)


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
    """Query parameters validated by `model`; a parameter given twice is refused, as the contract
    describes each as a single value (which one was meant cannot be known)."""
    repeated = sorted(name for name in set(request.query) if len(request.query.getall(name)) > 1)
    if repeated:
        errors = [{"field": name, "message": "given more than once", "type": "repeated"} for name in repeated]
        raise ProblemError(400, "Bad request", "Invalid query parameters.", errors=errors)
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise ProblemError(400, "Bad request", "Invalid query parameters.", errors=errors) from exc
