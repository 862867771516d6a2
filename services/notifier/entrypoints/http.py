"""Notifier's HTTP API (health, readiness, metrics and OpenAPI come with every service)."""

from __future__ import annotations

from aiohttp import web

from shared.http import Api
from shared.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)

api = Api(title="Errands notifier")
