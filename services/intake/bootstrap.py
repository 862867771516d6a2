"""Intake's composition root: everything the process holds is built here from one settings object."""

from __future__ import annotations

from functools import partial

import structlog
from aiohttp import web

from services.intake.adapters.geocoder import Geocoder, purge_geocode_cache
from services.intake.adapters.tables import inbox, outbox
from services.intake.entrypoints import dashboard
from services.intake.entrypoints.console import add_console
from services.intake.entrypoints.http import ERROR_STATUSES, KEYS, REGISTER, Register, api
from services.intake.service_layer import register, schedules, staff
from services.intake.service_layer.dashboard import DashboardFeed
from services.intake.service_layer.personal_data import erase_ended_tasks
from services.intake.service_layer.progress import PROGRESS_EVENTS, apply_progress, apply_progress_batch
from services.intake.service_layer.submission import Keys, purge_idempotency_keys
from services.intake.service_layer.volunteers import VOLUNTEER_HANDLERS
from shared import crypto
from shared.events import CONFIRMATIONS_TOPIC, DISPATCH_TOPIC, VOLUNTEERS_TOPIC
from shared.http import create_base_app
from shared.runtime import RUNTIME, Runtime, background_task, periodic_job, runtime_context
from shared.settings import Settings
from shared.web.pages import setup_pages

log = structlog.get_logger(__name__)


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
        batch_handlers=dict.fromkeys(PROGRESS_EVENTS, apply_progress_batch),
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
    setup_pages(app, "services.intake.entrypoints")
    add_console(app, settings)

    async def end_dashboard_streams(_: web.Application) -> None:
        feed.close()

    # on_shutdown runs before the server waits for in-flight requests, so open streams end at once.
    app.on_shutdown.append(end_dashboard_streams)
    app.cleanup_ctx.append(runtime_context(runtime))
    app.cleanup_ctx.append(background_task("outbox-relay", relay.run))
    app.cleanup_ctx.append(background_task("read-model", progress.run, on_stop=progress.stop))
    app.cleanup_ctx.append(background_task("volunteers", volunteers.run, on_stop=volunteers.stop))
    app.cleanup_ctx.append(background_task("ops-feed", feed.run))
    purge = periodic_job(
        runtime.sessionmaker,
        "idempotency.purged",
        partial(purge_idempotency_keys, retention_s=settings.idempotency_retention_s),
        interval_s=settings.idempotency_purge_interval_s,
    )
    app.cleanup_ctx.append(background_task("idempotency-purge", purge))
    forget_sessions = periodic_job(
        runtime.sessionmaker,
        "staff.purged",
        partial(staff.purge_spent, window_s=settings.login_failure_window_s),
        interval_s=settings.idempotency_purge_interval_s,
    )
    app.cleanup_ctx.append(background_task("staff-purge", forget_sessions))
    erase = periodic_job(
        runtime.sessionmaker,
        "personal_data.erased",
        partial(
            erase_ended_tasks,
            retention_s=settings.personal_data_retention_s,
            batch=settings.personal_data_erase_batch,
        ),
        interval_s=settings.personal_data_erase_interval_s,
    )
    app.cleanup_ctx.append(background_task("personal-data-erasure", erase))
    erase_recipients = periodic_job(
        runtime.sessionmaker,
        "recipients.erased",
        partial(register.erase_inactive, retention_s=retention_s, batch=settings.recipient_erasure_batch),
        interval_s=settings.recipient_erasure_interval_s,
    )
    app.cleanup_ctx.append(background_task("recipient-erasure", erase_recipients))
    forget_geocodes = periodic_job(
        runtime.sessionmaker,
        "geocode_cache.purged",
        partial(purge_geocode_cache, ttl_s=settings.geocoder_cache_ttl_s),
        interval_s=settings.recipient_erasure_interval_s,
    )
    app.cleanup_ctx.append(background_task("geocode-cache-purge", forget_geocodes))
    make_tasks = periodic_job(
        runtime.sessionmaker,
        "schedules.occurrences_made",
        partial(
            schedules.make_due_tasks,
            keys=app[KEYS],
            register_keys=register_keys,
            geocoder=geocoder,
            lead_time_s=settings.schedule_lead_time_s,
            batch=settings.schedule_batch,
        ),
        interval_s=settings.schedule_interval_s,
    )
    app.cleanup_ctx.append(background_task("schedules", make_tasks))
    if geocoder is not None:
        app.cleanup_ctx.append(geocoder.session_context)
    return app
