"""Notifier's composition root."""

from __future__ import annotations

from aiohttp import web

from services.notifier.adapters.tables import inbox, outbox
from services.notifier.entrypoints.http import RUNTIME, api
from services.notifier.service_layer.confirmations import Confirmer
from shared.consumer import EventConsumer
from shared.events import DISPATCH_TOPIC, TASKS_TOPIC
from shared.http import create_base_app
from shared.outbox import OutboxRelay
from shared.runtime import Runtime, background_task, runtime_context
from shared.settings import Settings


def create_app(settings: Settings) -> web.Application:
    runtime = Runtime.build(settings, client_id="notifier")
    app = create_base_app(api=api, readiness=runtime.readiness_checks())
    app[RUNTIME] = runtime
    confirmer = Confirmer(max_failures=settings.confirmation_max_failures)
    relay = OutboxRelay(
        outbox=outbox,
        sessionmaker=runtime.sessionmaker,
        producer=runtime.producer,
        listener=runtime.listener,
        batch_size=settings.relay_batch_size,
        idle_poll_s=settings.relay_idle_poll_s,
    )
    consumer = EventConsumer(
        settings=settings,
        group_id="notifier",
        topics=(TASKS_TOPIC, DISPATCH_TOPIC),
        handlers={
            "task.submitted": confirmer.on_task_submitted,
            "task.cancelled": confirmer.on_task_cancelled,
            "leg.delivered": confirmer.on_leg_delivered,
        },
        sessionmaker=runtime.sessionmaker,
        inbox=inbox,
        producer=runtime.producer,
    )
    app.cleanup_ctx.append(runtime_context(runtime))
    app.cleanup_ctx.append(background_task("outbox-relay", relay.run))
    app.cleanup_ctx.append(background_task("consumer", consumer.run, on_stop=consumer.stop))
    return app
