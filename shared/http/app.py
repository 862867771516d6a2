"""The application every service starts from: the common middleware, body limit and endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.errors import COMMON_STATUSES, ErrorStatuses
from shared.http.middleware import ERROR_STATUSES, request_middleware
from shared.http.openapi import Api
from shared.http.parsing import MAX_BODY_BYTES
from shared.http.problems import problem_response
from shared.http.responses import json_response

ReadinessCheck = Callable[[], Awaitable[None]]


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
