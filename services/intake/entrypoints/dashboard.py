"""The ops dashboard over HTTP: a page that carries no data, a snapshot, and a live stream of snapshots.

A browser cannot put a bearer token on a navigation, so `GET /ops` serves only the page (no data,
no auth); the page reads the token from its URL fragment (which browsers never send) or a form, and
calls `GET /ops/snapshot` and `GET /ops/stream` with `Authorization: Bearer`. Only ops and admin
tokens read them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import re
from importlib import resources

from aiohttp import web

from services.intake.entrypoints.http import api
from services.intake.entrypoints.schemas import OpsSnapshotOut
from services.intake.service_layer.dashboard import DashboardFeed
from shared.auth import Role
from shared.http import json_response
from shared.runtime import authorize, token_revocation

FEED = web.AppKey("ops_feed", DashboardFeed)
KEEPALIVE_S = 15.0

routes = web.RouteTableDef()


@functools.cache
def _page() -> tuple[bytes, str]:
    """The page and a Content-Security-Policy that allows exactly its own inline script and style."""
    html = resources.files(__package__).joinpath("ops.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
            for block in blocks
        )

    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {hashes('script')}",
            f"style-src {hashes('style')}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return html.encode(), policy


@routes.get("/ops")
async def ops_page(_: web.Request) -> web.Response:
    body, policy = _page()
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": policy,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


@api.route(
    "GET",
    "/ops/snapshot",
    summary="The ops dashboard now: tasks by status, escalations, waiting legs, volunteers, timings",
    response=OpsSnapshotOut,
    roles=("ops", "admin"),
)
async def ops_snapshot(request: web.Request) -> web.Response:
    await authorize(request, Role.OPS, Role.ADMIN)
    snapshot = await request.app[FEED].read()
    return json_response(OpsSnapshotOut.model_validate(snapshot), headers={"Cache-Control": "no-store"})


@routes.get("/ops/stream")
async def ops_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the current snapshot at once, then each time it changes (about once a second)."""
    await authorize(request, Role.OPS, Role.ADMIN)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a buffering proxy would hold the events back
        }
    )
    await response.prepare(request)
    try:
        async with token_revocation(request) as revoked, request.app[FEED].subscription() as updates:
            while True:
                update = asyncio.ensure_future(updates.get())
                try:
                    await asyncio.wait(
                        (update, revoked), timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    update.cancel()
                if revoked.done():
                    break  # the token was revoked: the stream ends, and reconnecting is refused
                if not update.done() or update.cancelled():
                    await response.write(b": keep-alive\n\n")
                    continue
                snapshot = update.result()
                if snapshot is None:
                    break
                data = OpsSnapshotOut.model_validate(snapshot).model_dump_json()
                await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass  # the dashboard was closed
    return response
