"""Intake's composition root: everything the process holds is built here from one settings object."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.adapters.tables import inbox, outbox
from services.intake.entrypoints import dashboard
from services.intake.entrypoints.http import ERROR_STATUSES, KEYS, api
from services.intake.service_layer.dashboard import DashboardFeed
from services.intake.service_layer.progress import apply_progress
from services.intake.service_layer.submission import Keys, purge_idempotency_keys
from services.intake.service_layer.volunteers import VOLUNTEER_HANDLERS
from shared.events import CONFIRMATIONS_TOPIC, DISPATCH_TOPIC, VOLUNTEERS_TOPIC
from shared.http import create_base_app
from shared.runtime import RUNTIME, Runtime, background_task, runtime_context
from shared.settings import Settings

log = structlog.get_logger(__name__)

PROGRESS_EVENTS = (
    "leg.offered",
    "leg.offer_declined",
    "leg.offer_expired",
    "leg.assigned",
    "leg.picked_up",
    "leg.delivered",
    "leg.problem_reported",
    "leg.decided",
    "leg.failed",
    "task.escalated",
    "leg.confirmed",
    "leg.confirmation_failed",
    "task.completed",
)


def idempotency_purge(
    sessionmaker: async_sessionmaker[AsyncSession], *, retention_s: float, interval_s: float
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A loop that forgets idempotency records once they are older than the retention."""

    async def run() -> None:
        while True:
            async with sessionmaker() as session, session.begin():
                purged = await purge_idempotency_keys(session=session, retention_s=retention_s)
            if purged:
                log.info("idempotency.purged", records=purged)
            await asyncio.sleep(interval_s)

    return run


def create_app(settings: Settings) -> web.Application:
    runtime = Runtime.build(settings, client_id="intake")
    app = create_base_app(api=api, readiness=runtime.readiness_checks(), error_statuses=ERROR_STATUSES)
    app[RUNTIME] = runtime
    app[KEYS] = Keys(code_key=settings.code_key, data_key=settings.data_key)
    relay = runtime.outbox_relay(outbox)
    progress = runtime.event_consumer(
        group_id="intake-read-model",
        topics=(DISPATCH_TOPIC, CONFIRMATIONS_TOPIC),
        handlers=dict.fromkeys(PROGRESS_EVENTS, apply_progress),
        inbox=inbox,
    )
    # Its own group, not the read model's: location reports are the busiest stream in the system and
    # must never queue task progress behind them; its lag shows on its own, and it can be replayed
    # (a new group id) without touching the read model.
    volunteers = runtime.event_consumer(
        group_id="intake-volunteers",
        topics=(VOLUNTEERS_TOPIC,),
        handlers=VOLUNTEER_HANDLERS,
        inbox=inbox,
    )
    feed = DashboardFeed(runtime.sessionmaker)
    app[dashboard.FEED] = feed
    app.router.add_routes(dashboard.routes)

    async def end_dashboard_streams(_: web.Application) -> None:
        feed.close()

    # on_shutdown runs before the server waits for in-flight requests, so open streams end at once.
    app.on_shutdown.append(end_dashboard_streams)
    app.cleanup_ctx.append(runtime_context(runtime))
    app.cleanup_ctx.append(background_task("outbox-relay", relay.run))
    app.cleanup_ctx.append(background_task("read-model", progress.run, on_stop=progress.stop))
    app.cleanup_ctx.append(background_task("volunteers", volunteers.run, on_stop=volunteers.stop))
    app.cleanup_ctx.append(background_task("ops-feed", feed.run))
    purge = idempotency_purge(
        runtime.sessionmaker,
        retention_s=settings.idempotency_retention_s,
        interval_s=settings.idempotency_purge_interval_s,
    )
    app.cleanup_ctx.append(background_task("idempotency-purge", purge))
    return app
