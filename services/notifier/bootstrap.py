"""Notifier's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.adapters.channels import Channel, EmailChannel, SmsGatewayChannel
from services.notifier.adapters.tables import inbox, outbox
from services.notifier.adapters.webhook_sender import WebhookSender
from services.notifier.entrypoints.http import ERROR_STATUSES, URL_CHECK, api
from services.notifier.service_layer import personal_data
from services.notifier.service_layer.confirmations import Confirmer
from services.notifier.service_layer.delivery import DeliveryWorker
from services.notifier.service_layer.notifications import Notifications
from shared.consumer import Handler
from shared.events import DISPATCH_TOPIC, TASKS_TOPIC, CloudEvent
from shared.http import create_base_app
from shared.outbound import check_url_is_public
from shared.runtime import RUNTIME, Runtime, background_task, periodic_job, runtime_context
from shared.settings import Settings

# Dispatcher events partners may subscribe to; the notifier forwards them as they arrive.
_FORWARDED = ("task.escalated", "leg.picked_up", "leg.problem_reported")


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The recipient channels that have an address configured."""
    channels: dict[str, Channel] = {}
    if settings.sms_gateway_url:
        channels["sms"] = SmsGatewayChannel(
            url=settings.sms_gateway_url, token=settings.sms_gateway_token, timeout_s=settings.sms_timeout_s
        )
    if settings.smtp_host:
        channels["email"] = EmailChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            timeout_s=settings.smtp_timeout_s,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
        )
    return channels


def _in_turn(*handlers: Handler) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        for handler in handlers:
            await handler(session, event)

    return handle


def _clients_context(
    sender: WebhookSender, channels: dict[str, Channel]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_: web.Application) -> AsyncIterator[None]:
        await sender.open()
        sms = channels.get("sms")
        if isinstance(sms, SmsGatewayChannel):
            await sms.open()
        try:
            yield
        finally:
            await sender.close()
            if isinstance(sms, SmsGatewayChannel):
                await sms.close()

    return context


def create_app(settings: Settings) -> web.Application:
    runtime = Runtime.build(settings, client_id="notifier")
    app = create_base_app(api=api, readiness=runtime.readiness_checks(), error_statuses=ERROR_STATUSES)
    app[RUNTIME] = runtime
    app[URL_CHECK] = check_url_is_public
    channels = build_channels(settings)
    notifications = Notifications(
        data_key=settings.data_key,
        webhook_max_attempts=settings.webhook_max_attempts,
        channels=channels,
        offer_sms_min_interval_s=settings.offer_sms_min_interval_s,
    )
    confirmer = Confirmer(max_failures=settings.confirmation_max_failures, notifications=notifications)
    sender = WebhookSender(
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private_urls,
        max_response_bytes=settings.webhook_response_max_bytes,
    )
    worker = DeliveryWorker(
        settings=settings,
        sessionmaker=runtime.sessionmaker,
        sender=sender,
        channels=channels,
        notifications=notifications,
        listener=runtime.listener,
    )
    relay = runtime.outbox_relay(outbox)
    forward = notifications.on_consumed_event
    consumer = runtime.event_consumer(
        group_id=settings.notifier_consumer_group,
        topics=(TASKS_TOPIC, DISPATCH_TOPIC),
        handlers={
            "task.submitted": confirmer.on_task_submitted,
            "task.cancelled": _in_turn(confirmer.on_task_cancelled, forward),
            "leg.delivered": confirmer.on_leg_delivered,
            "leg.decided": _in_turn(confirmer.on_leg_decided, forward),
            "leg.failed": _in_turn(confirmer.on_leg_failed, forward),
            "leg.assigned": forward,
            "task.personal_data_erased": personal_data.erase_task,
            "leg.eta_updated": forward,
            "leg.offered": notifications.on_leg_offered,
            **{event_type: forward for event_type in _FORWARDED},
        },
        inbox=inbox,
    )
    app.cleanup_ctx.append(runtime_context(runtime))
    app.cleanup_ctx.append(_clients_context(sender, channels))
    app.cleanup_ctx.append(background_task("outbox-relay", relay.run))
    app.cleanup_ctx.append(background_task("delivery-worker", worker.run))
    app.cleanup_ctx.append(background_task("consumer", consumer.run, on_stop=consumer.stop))
    erase = periodic_job(
        runtime.sessionmaker,
        "personal_data.erased",
        partial(
            personal_data.erase_ended_tasks,
            retention_s=settings.personal_data_retention_s,
            batch=settings.personal_data_erase_batch,
        ),
        interval_s=settings.personal_data_erase_interval_s,
    )
    app.cleanup_ctx.append(background_task("personal-data-erasure", erase))
    return app
