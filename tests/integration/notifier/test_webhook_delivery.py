"""Webhook and callback deliveries: signed, retried from the database, recorded, dead-lettered."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.resolver import DefaultResolver
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifier.adapters.tables import DeliveryRow, ParkedEventRow, WebhookEndpointRow
from services.notifier.adapters.webhook_sender import WebhookSender
from services.notifier.service_layer import webhooks
from services.notifier.service_layer.confirmations import Confirmer
from services.notifier.service_layer.delivery import DeliveryWorker
from services.notifier.service_layer.notifications import Notifications
from shared.settings import Settings
from tests.integration.notifier.conftest import Receiver
from tests.integration.notifier.factories import TaskScenario
from tests.integration.notifier.test_confirmations import consume


@dataclass
class World:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    confirmer: Confirmer
    notifications: Notifications
    worker: DeliveryWorker
    organisation_id: uuid.UUID

    async def endpoint(self, url: str, events: list[str]) -> webhooks.Endpoint:
        async with self.sessionmaker() as session, session.begin():
            return await webhooks.create_endpoint(
                session=session,
                organisation_id=self.organisation_id,
                url=url,
                events=events,
                description=None,
                data_key=self.settings.data_key,
                check_url=None,
            )

    async def confirmed_task(self, **scenario: object) -> TaskScenario:
        task = TaskScenario(self.settings, self.organisation_id, **scenario)  # type: ignore[arg-type]
        await consume(self.sessionmaker, self.confirmer.on_task_submitted, task.submitted())
        await consume(self.sessionmaker, self.confirmer.on_leg_delivered, task.delivered(task.leg_ids[0]))
        return task

    async def deliveries(self, task_id: uuid.UUID) -> list[DeliveryRow]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(DeliveryRow).where(DeliveryRow.task_id == task_id).order_by(DeliveryRow.created_at)
            )
            return list(rows.scalars())

    async def work_until_settled(self, task_id: uuid.UUID, *, rounds: int = 300) -> list[DeliveryRow]:
        """Run the worker until no delivery of the task is pending (bounded by rounds, not by time)."""
        for _ in range(rounds):
            await self.worker.run_once()
            rows = await self.deliveries(task_id)
            if rows and all(row.status != "pending" for row in rows):
                return rows
            await asyncio.sleep(0.02)
        raise AssertionError("deliveries still pending")


@pytest.fixture
async def world(
    notifier_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[World]:
    notifications = Notifications(
        data_key=notifier_settings.data_key,
        webhook_max_attempts=notifier_settings.webhook_max_attempts,
        channels={},
    )
    sender = WebhookSender(timeout_s=notifier_settings.webhook_timeout_s, allow_private=True)
    await sender.open()
    worker = DeliveryWorker(
        settings=notifier_settings,
        sessionmaker=sessionmaker,
        sender=sender,
        channels={},
        notifications=notifications,
    )
    try:
        yield World(
            notifier_settings,
            sessionmaker,
            Confirmer(max_failures=3, notifications=notifications),
            notifications,
            worker,
            uuid.uuid4(),
        )
    finally:
        await sender.close()


async def test_deliveries_are_signed_by_the_standard_webhooks_scheme(
    world: World, receiver: Receiver
) -> None:
    endpoint = await world.endpoint(receiver.url(), ["leg.confirmed", "task.completed"])
    task = await world.confirmed_task()
    rows = await world.work_until_settled(task.task_id)
    assert [row.status for row in rows] == ["succeeded", "succeeded"]
    assert len(receiver.requests) == 2
    verifier = Webhook(str(endpoint.secret))
    received_types = []
    for request in receiver.requests:
        payload = verifier.verify(request.body, request.headers)
        received_types.append(payload["type"])
        assert payload["subject"] == str(task.task_id)
        with pytest.raises(WebhookVerificationError):
            verifier.verify(
                request.body.replace(b"confirmed", b"c0nfirmed").replace(b"leg_ids", b"leg_idz"),
                request.headers,
            )
    assert sorted(received_types) == ["leg.confirmed", "task.completed"]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {str(row.id) for row in rows}


async def test_only_subscribed_events_of_the_own_organisation_are_delivered(
    world: World, receiver: Receiver
) -> None:
    await world.endpoint(receiver.url(), ["task.completed"])
    task = await world.confirmed_task()
    other = World(**{**world.__dict__, "organisation_id": uuid.uuid4()})
    other_task = await other.confirmed_task()
    rows = await world.work_until_settled(task.task_id)
    assert [row.event_type for row in rows] == ["task.completed"]
    assert await world.deliveries(other_task.task_id) == []


async def test_failures_are_retried_with_the_same_webhook_id_and_every_attempt_recorded(
    world: World, receiver: Receiver
) -> None:
    receiver.answers = [(500, {}), (503, {}), (200, {})]
    endpoint = await world.endpoint(receiver.url(), ["task.completed"])
    task = await world.confirmed_task()
    rows = await world.work_until_settled(task.task_id)
    assert [(row.status, row.attempts) for row in rows] == [("succeeded", 3)]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {str(rows[0].id)}
    assert len({r.headers["webhook-timestamp"] for r in receiver.requests}) >= 1
    async with world.sessionmaker() as session:
        page = await webhooks.list_deliveries(
            session=session,
            organisation_id=world.organisation_id,
            endpoint_id=endpoint.id,
            status=None,
            limit=10,
            before=None,
        )
    attempts = page.items[0].attempts
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert [a.error for a in attempts] == ["HTTP 500", "HTTP 503", None]
    assert all(a.latency_ms >= 0 for a in attempts)


async def test_retry_after_on_429_schedules_the_next_attempt_no_sooner(
    world: World, receiver: Receiver
) -> None:
    receiver.answers = [(429, {"Retry-After": "3600"})]
    await world.endpoint(receiver.url(), ["task.completed"])
    task = await world.confirmed_task()
    before = datetime.now(UTC)
    await world.worker.run_once()
    [row] = await world.deliveries(task.task_id)
    assert row.status == "pending" and row.attempts == 1
    # The configured backoff is at most 50 ms; the receiver asked for an hour.
    assert row.next_attempt_at >= before + timedelta(seconds=3600)


async def test_after_the_last_attempt_the_delivery_is_dead_and_a_manual_retry_sends_it_again(
    world: World, receiver: Receiver
) -> None:
    receiver.answers = [(500, {})] * world.settings.webhook_max_attempts
    endpoint = await world.endpoint(receiver.url(), ["task.completed"])
    endpoint_id = endpoint.id
    task = await world.confirmed_task()
    [row] = await world.work_until_settled(task.task_id)
    assert (row.status, row.attempts) == ("dead", world.settings.webhook_max_attempts)
    async with world.sessionmaker() as session:
        dead = await webhooks.list_deliveries(
            session=session,
            organisation_id=world.organisation_id,
            endpoint_id=endpoint_id,
            status="dead",
            limit=10,
            before=None,
        )
    assert [item.row.id for item in dead.items] == [row.id]

    async with world.sessionmaker() as session, session.begin():
        await webhooks.retry_delivery(
            session=session,
            organisation_id=world.organisation_id,
            endpoint_id=endpoint_id,
            delivery_id=row.id,
        )
    [row] = await world.work_until_settled(task.task_id)
    assert (row.status, row.attempts) == ("succeeded", world.settings.webhook_max_attempts + 1)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {str(row.id)}


async def test_manual_retry_is_scoped_to_the_organisation(world: World, receiver: Receiver) -> None:
    receiver.answers = [(500, {})] * world.settings.webhook_max_attempts
    endpoint = await world.endpoint(receiver.url(), ["task.completed"])
    task = await world.confirmed_task()
    [row] = await world.work_until_settled(task.task_id)
    async with world.sessionmaker() as session, session.begin():
        with pytest.raises(Exception, match="No such webhook"):
            await webhooks.retry_delivery(
                session=session,
                organisation_id=uuid.uuid4(),
                endpoint_id=endpoint.id,
                delivery_id=row.id,
            )


async def test_410_disables_the_endpoint(world: World, receiver: Receiver) -> None:
    receiver.answers = [(410, {})]
    endpoint = await world.endpoint(receiver.url(), ["task.completed"])
    task = await world.confirmed_task()
    [row] = await world.work_until_settled(task.task_id)
    assert row.status == "dead" and row.attempts == 1
    async with world.sessionmaker() as session:
        stored = await session.get(WebhookEndpointRow, endpoint.id)
    assert stored is not None and stored.disabled_at is not None
    later = await world.confirmed_task()
    assert await world.deliveries(later.task_id) == [], "a disabled endpoint receives nothing new"


async def test_a_call_that_hangs_is_cut_off_by_the_timeout(world: World, receiver: Receiver) -> None:
    receiver.delay_s = world.settings.webhook_timeout_s + 1
    await world.endpoint(receiver.url(), ["task.completed"])
    task = await world.confirmed_task()
    await world.worker.run_once()
    [row] = await world.deliveries(task.task_id)
    assert row.attempts == 1 and row.last_error == "timeout" and row.status == "pending"


async def test_scheduled_retries_survive_a_restart(world: World, receiver: Receiver) -> None:
    receiver.answers = [(503, {})]
    await world.endpoint(receiver.url(), ["task.completed"])
    task = await world.confirmed_task()
    await world.worker.run_once()
    [row] = await world.deliveries(task.task_id)
    assert (row.status, row.attempts) == ("pending", 1)
    # A new process: nothing in memory survives, only the database.
    sender = WebhookSender(timeout_s=1.0, allow_private=True)
    await sender.open()
    try:
        restarted = DeliveryWorker(
            settings=world.settings,
            sessionmaker=world.sessionmaker,
            sender=sender,
            channels={},
            notifications=world.notifications,
        )
        world.worker = restarted
        [row] = await world.work_until_settled(task.task_id)
    finally:
        await sender.close()
    assert (row.status, row.attempts) == ("succeeded", 2)
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


async def test_callback_url_receives_the_tasks_events_signed_with_the_callback_secret(
    world: World, receiver: Receiver
) -> None:
    async with world.sessionmaker() as session, session.begin():
        secret = await webhooks.rotate_callback_secret(
            session=session, organisation_id=world.organisation_id, data_key=world.settings.data_key
        )
    task = await world.confirmed_task(callback_url=receiver.url("/callback"))
    rows = await world.work_until_settled(task.task_id)
    assert sorted(row.event_type for row in rows) == ["leg.confirmed", "task.completed"]
    assert all(row.status == "succeeded" and row.endpoint_id is None for row in rows)
    verifier = Webhook(secret)
    assert sorted(verifier.verify(r.body, r.headers)["type"] for r in receiver.requests) == [
        "leg.confirmed",
        "task.completed",
    ]


async def test_private_urls_are_refused_at_send_time_unless_allowed(receiver: Receiver) -> None:
    strict = WebhookSender(timeout_s=1.0, allow_private=False)
    await strict.open()
    try:
        for url in (receiver.url(), receiver.url().replace("127.0.0.1", "localhost")):
            result = await strict.post(url, body=b"{}", headers={})
            assert result.status_code is None and (result.error or "").startswith("refused"), url
    finally:
        await strict.close()
    assert receiver.requests == []


@pytest.mark.parametrize(
    "host",
    [
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[2002:7f00:1::1]",  # 6to4 around 127.0.0.1
        "[::ffff:0:7f00:1]",  # SIIT
        "[::7f00:1]",  # IPv4-compatible
        "[fec0::1]",
    ],
)
async def test_ipv6_forms_of_private_addresses_are_refused_at_send_time(host: str) -> None:
    strict = WebhookSender(timeout_s=1.0, allow_private=False)
    await strict.open()
    try:
        result = await strict.post(f"http://{host}:9/hook", body=b"{}", headers={})
    finally:
        await strict.close()
    assert result.status_code is None and (result.error or "").startswith("refused"), result


async def test_a_name_resolving_to_a_nat64_private_address_is_refused_at_send_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolve(
        host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "64:ff9b::a9fe:a9fe",
                "port": port,
                "family": socket.AF_INET6,
                "proto": 0,
                "flags": 0,
            }
        ]

    monkeypatch.setattr(DefaultResolver, "resolve", lambda self, *args: resolve(*args))
    strict = WebhookSender(timeout_s=1.0, allow_private=False)
    await strict.open()
    try:
        result = await strict.post("http://metadata.example.org/hook", body=b"{}", headers={})
    finally:
        await strict.close()
    assert result.status_code is None and (result.error or "").startswith("refused"), result


async def test_an_endless_answer_is_read_no_further_than_the_limit() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            for _ in range(1000):  # ten seconds of 64 KiB every 10 ms, should the reader never stop
                await response.write(b"x" * 65536)
                await asyncio.sleep(0.01)
        except ConnectionError:
            pass
        return response

    app = web.Application()
    app.router.add_post("/hook", endless)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sender = WebhookSender(timeout_s=3.0, allow_private=True, max_response_bytes=64 * 1024)
    await sender.open()
    try:
        result = await sender.post(str(server.make_url("/hook")), body=b"{}", headers={})
    finally:
        await sender.close()
        await server.close()
    assert (result.status_code, result.error) == (200, None), result
    assert result.latency_ms < 3000


async def test_events_that_overtake_their_task_are_forwarded_once_it_arrives(
    world: World, receiver: Receiver
) -> None:
    await world.endpoint(receiver.url(), ["leg.assigned", "leg.picked_up", "task.completed"])
    task = TaskScenario(world.settings, world.organisation_id)
    leg_id = task.leg_ids[0]
    forward = world.notifications.on_consumed_event
    # The dispatch topic is read first: the leg's assignment, pickup and delivery come before the task.
    await consume(world.sessionmaker, forward, task.assigned(leg_id))
    await consume(world.sessionmaker, forward, task.picked_up(leg_id))
    await consume(world.sessionmaker, world.confirmer.on_leg_delivered, task.delivered(leg_id))
    assert await world.deliveries(task.task_id) == [], "nobody is known to want them yet"
    await consume(world.sessionmaker, world.confirmer.on_task_submitted, task.submitted())
    rows = await world.work_until_settled(task.task_id)
    assert sorted(row.event_type for row in rows) == ["leg.assigned", "leg.picked_up", "task.completed"]
    assert all(row.status == "succeeded" for row in rows)
    async with world.sessionmaker() as session:
        left = await session.scalar(
            select(func.count()).select_from(ParkedEventRow).where(ParkedEventRow.task_id == task.task_id)
        )
    assert left == 0
