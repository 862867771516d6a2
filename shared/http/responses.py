"""Successful answers as JSON."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel


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
