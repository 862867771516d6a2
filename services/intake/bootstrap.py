"""Intake's composition root: everything the process holds is built here from one settings object."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.adapters.geocoder import Geocoder, purge_geocode_cache
from services.intake.adapters.tables import inbox, outbox
from services.intake.entrypoints import dashboard
from services.intake.entrypoints.http import ERROR_STATUSES, KEYS, REGISTER, Register, api
from services.intake.service_layer import register
from services.intake.service_layer.dashboard import DashboardFeed
from services.intake.service_layer.progress import apply_progress
from services.intake.service_layer.submission import Keys, purge_idempotency_keys
from services.intake.service_layer.volunteers import VOLUNTEER_HANDLERS
from shared import crypto
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


def recipient_erasure(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    retention_s: float,
    batch: int,
    interval_s: float,
    geocode_ttl_s: float,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A loop that erases recipients inactive for the retention, a batch per transaction, and forgets
    stale geocoding answers. Running it twice, or in two replicas at once, erases nothing twice."""

    async def run() -> None:
        while True:
            await erase_inactive_recipients(sessionmaker, retention_s=retention_s, batch=batch)
            async with sessionmaker() as session, session.begin():
                await purge_geocode_cache(session, ttl_s=geocode_ttl_s)
            await asyncio.sleep(interval_s)

    return run


async def erase_inactive_recipients(
    sessionmaker: async_sessionmaker[AsyncSession], *, retention_s: float, batch: int
) -> int:
    """Erase every recipient inactive for `retention_s`, `batch` at a time; returns how many went."""
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            erased = await register.erase_inactive(session=session, retention_s=retention_s, batch=batch)
        total += erased
        if erased < batch:
            break
    if total:
        log.info("recipients.erased", recipients=total)
    return total


def create_app(settings: Settings) -> web.Application:
    runtime = Runtime.build(settings, client_id="intake")
    app = create_base_app(api=api, readiness=runtime.readiness_checks(), error_statuses=ERROR_STATUSES)
    app[RUNTIME] = runtime
    app[KEYS] = Keys(code_key=settings.code_key, data_key=settings.data_key)
    register_keys = register.RegisterKeys.from_data_key(settings.data_key)
    geocoder = None
    if settings.geocoder_url:
        geocoder = Geocoder(
            url=settings.geocoder_url,
            sessionmaker=runtime.sessionmaker,
            cache_key=crypto.derived_key(settings.data_key, "geocode-cache"),
            cache_ttl_s=settings.geocoder_cache_ttl_s,
            timeout_s=settings.geocoder_timeout_s,
            user_agent=settings.geocoder_user_agent,
        )
    retention_s = settings.recipient_retention_days * 86400.0
    app[REGISTER] = Register(keys=register_keys, geocoder=geocoder, retention_s=retention_s)
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
    if geocoder is not None:
        app.cleanup_ctx.append(geocoder.session_context)
    erasure = recipient_erasure(
        runtime.sessionmaker,
        retention_s=retention_s,
        batch=settings.recipient_erasure_batch,
        interval_s=settings.recipient_erasure_interval_s,
        geocode_ttl_s=settings.geocoder_cache_ttl_s,
    )
    app.cleanup_ctx.append(background_task("recipient-erasure", erasure))
    return app
