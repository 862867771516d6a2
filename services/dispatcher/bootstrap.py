"""Dispatcher's composition root."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from services.dispatcher.adapters.photo_store import PhotoStores
from services.dispatcher.adapters.repository import LEGS_CHANNEL, PRESSING_CHANNEL, VOLUNTEER_CHANNEL
from services.dispatcher.adapters.tables import inbox, outbox
from services.dispatcher.adapters.wakeups import VolunteerWakeups
from services.dispatcher.entrypoints.app import add_app_routes
from services.dispatcher.entrypoints.http import ERROR_STATUSES, api
from services.dispatcher.entrypoints.location_stream import LOCATION_STREAMS, LOCATIONS, LocationStreams
from services.dispatcher.entrypoints.me import PHOTO_DECODING, PHOTO_STORES, WAKEUPS
from services.dispatcher.service_layer import personal_data, volunteer_requests
from services.dispatcher.service_layer.eta import eta_policy
from services.dispatcher.service_layer.legs import (
    cancel_task,
    confirm_leg,
    flag_leg,
    take_in_task,
    take_in_tasks,
)
from services.dispatcher.service_layer.locations import LocationBuffer, LocationFlusher
from services.dispatcher.service_layer.matcher import round_clock, run_matcher
from services.dispatcher.service_layer.sweeps import run_sweeps
from shared.auth import RateLimiter
from shared.events import CONFIRMATIONS_TOPIC, TASKS_TOPIC
from shared.http import create_base_app
from shared.runtime import RUNTIME, Runtime, background_task, periodic_job, runtime_context
from shared.settings import Settings
from shared.web.static import add_vendor_routes


def create_app(settings: Settings) -> web.Application:
    runtime = Runtime.build(settings, client_id="dispatcher")
    app = create_base_app(api=api, readiness=runtime.readiness_checks(), error_statuses=ERROR_STATUSES)
    app[RUNTIME] = runtime
    add_app_routes(app, map_apps=settings.app_map_apps)
    add_vendor_routes(app)
    wakeups = VolunteerWakeups(runtime.listener, VOLUNTEER_CHANNEL)
    app[WAKEUPS] = wakeups
    stores = PhotoStores.from_settings(settings)
    app[PHOTO_STORES] = stores
    app[PHOTO_DECODING] = asyncio.Semaphore(settings.photo_decode_concurrency)
    locations = LocationBuffer(capacity=settings.location_buffer_max_volunteers)
    app[LOCATIONS] = locations
    streams = LocationStreams(
        limiter=RateLimiter(per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst)
    )
    app[LOCATION_STREAMS] = streams
    flusher = LocationFlusher(
        locations,
        runtime.sessionmaker,
        interval_s=settings.location_flush_interval_ms / 1000,
        eta=eta_policy(settings),
    )
    relay = runtime.outbox_relay(outbox)
    consumer = runtime.event_consumer(
        group_id="dispatcher",
        topics=(TASKS_TOPIC, CONFIRMATIONS_TOPIC),
        handlers={
            "task.submitted": take_in_task,
            "task.cancelled": cancel_task,
            "task.personal_data_erased": partial(personal_data.erase_task, photos=stores),
            "leg.confirmed": confirm_leg,
            "leg.confirmation_failed": flag_leg,
        },
        inbox=inbox,
        # A backlog of submissions is taken in one statement per fetched batch, not one per task.
        batch_handlers={"task.submitted": take_in_tasks},
    )

    async def release_polls(_: web.Application) -> None:
        # Waiting long polls answer now instead of holding the shutdown for up to a minute, and
        # location streams (held for a whole shift) get their last acknowledgement and a close.
        wakeups.close()
        await streams.close()

    app.cleanup_ctx.append(runtime_context(runtime))

    async def close_photo_stores(_: web.Application) -> AsyncIterator[None]:
        yield
        await stores.close()

    app.cleanup_ctx.append(close_photo_stores)
    app.cleanup_ctx.append(background_task("outbox-relay", relay.run))
    app.cleanup_ctx.append(background_task("consumer", consumer.run, on_stop=consumer.stop))
    clock = round_clock(settings)
    runtime.listener.subscribe(PRESSING_CHANNEL, lambda _: clock.press())
    # An empty payload is the listener's own wake-up after it reconnects: no legs to count.
    runtime.listener.subscribe(LEGS_CHANNEL, lambda legs: clock.taken_in(int(legs) if legs.isdigit() else 0))
    app.cleanup_ctx.append(
        background_task("matcher", lambda: run_matcher(settings, runtime.sessionmaker, clock))
    )
    app.cleanup_ctx.append(background_task("sweeps", lambda: run_sweeps(settings, runtime.sessionmaker)))
    purge = periodic_job(
        runtime.sessionmaker,
        "volunteer_requests.purged",
        partial(volunteer_requests.purge, retention_s=settings.idempotency_retention_s),
        interval_s=settings.idempotency_purge_interval_s,
    )
    app.cleanup_ctx.append(background_task("volunteer-requests-purge", purge))
    erase = periodic_job(
        runtime.sessionmaker,
        "personal_data.erased",
        partial(
            personal_data.erase_ended_legs,
            retention_s=settings.personal_data_retention_s,
            batch=settings.personal_data_erase_batch,
            photos=stores,
        ),
        interval_s=settings.personal_data_erase_interval_s,
    )
    app.cleanup_ctx.append(background_task("personal-data-erasure", erase))
    # Last in, so first out: buffered reports are written (and the relay may still publish them)
    # after requests have drained and before the connections close.
    app.cleanup_ctx.append(background_task("location-flusher", flusher.run, on_stop=locations.close))
    app.on_shutdown.append(release_polls)
    return app
