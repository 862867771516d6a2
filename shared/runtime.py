"""The resources every service process holds, opened and closed as aiohttp cleanup contexts, and serving."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import Principal, RateLimiter, Role, TokenVerifier, require_role
from shared.consumer import BatchHandler, EventConsumer, Handler
from shared.db import create_engine, create_sessionmaker
from shared.events import current_actor
from shared.http import ProblemAppRunner, ReadinessCheck
from shared.kafka import create_producer, start_with_retry
from shared.listen import PgListener
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.staff import SESSION_COOKIE, SessionVerifier

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """A service process's connections: built once in its composition root and handed down."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    listener: PgListener
    tokens: TokenVerifier
    sessions: SessionVerifier
    # What the process runs in the background; each must be working before the process is ready.
    consumers: list[EventConsumer] = field(default_factory=list)
    relays: list[OutboxRelay] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, *, client_id: str) -> Runtime:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        listener = PgListener(settings.asyncpg_dsn)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            producer=create_producer(settings, client_id=client_id),
            listener=listener,
            tokens=TokenVerifier(
                sessionmaker,
                listener=listener,
                limiter=RateLimiter(per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst),
            ),
            sessions=SessionVerifier(sessionmaker),
        )

    async def open(self) -> None:
        await start_with_retry(self.producer, what="producer")
        await self.listener.start()

    async def close(self) -> None:
        await self.listener.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.engine.dispose()

    def outbox_relay(self, outbox: Table) -> OutboxRelay:
        """The one relay of a service's outbox."""
        relay = OutboxRelay(
            outbox=outbox,
            sessionmaker=self.sessionmaker,
            producer=self.producer,
            listener=self.listener,
            batch_size=self.settings.relay_batch_size,
            idle_poll_s=self.settings.relay_idle_poll_s,
            retention_s=self.settings.outbox_retention_s,
        )
        self.relays.append(relay)
        return relay

    def event_consumer(
        self,
        *,
        group_id: str,
        topics: tuple[str, ...],
        handlers: Mapping[str, Handler],
        inbox: Table,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
    ) -> EventConsumer:
        """A consumer loop of this service, de-duplicating through its inbox."""
        consumer = EventConsumer(
            settings=self.settings,
            group_id=group_id,
            topics=topics,
            handlers=handlers,
            sessionmaker=self.sessionmaker,
            inbox=inbox,
            producer=self.producer,
            batch_handlers=batch_handlers,
        )
        self.consumers.append(consumer)
        return consumer

    def readiness_checks(self) -> list[ReadinessCheck]:
        async def database() -> None:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        async def kafka() -> None:
            # A metadata round trip proves the broker answers, not just that a socket once opened.
            await self.producer.client.fetch_all_metadata()

        async def consumers() -> None:
            for consumer in self.consumers:
                await consumer.readiness()

        async def relay() -> None:
            for outbox_relay in self.relays:
                await outbox_relay.readiness()

        # Ready means working: the service's consumers own their partitions and have caught up to
        # where they started, and its relay publishes; until then /readyz answers 503 saying which.
        return [database, kafka, consumers, relay]


RUNTIME = web.AppKey("runtime", Runtime)


async def authorize(request: web.Request, *roles: Role) -> Principal:
    """The caller behind the request's bearer token or session cookie (401 otherwise), holding one of
    `roles` (else 403). A cookie-authenticated request that changes something needs its CSRF token.

    Who it is becomes the actor of the events the request causes (`shared.events.current_actor`).
    """
    runtime = request.app[RUNTIME]
    authorization = request.headers.get("Authorization")
    if authorization is None and SESSION_COOKIE in request.cookies:
        principal = await runtime.sessions.verify(request)
    else:
        principal = await runtime.tokens.verify(authorization)
    require_role(principal, *roles)
    current_actor.set(str(principal.actor))
    return principal


@contextlib.asynccontextmanager
async def token_revocation(request: web.Request) -> AsyncIterator[asyncio.Task[None]]:
    """For a stream's life: a task that finishes once the token (or session) that opened it is revoked."""
    runtime = request.app[RUNTIME]
    authorization = request.headers.get("Authorization")
    if authorization is None and SESSION_COOKIE in request.cookies:
        revoked = asyncio.create_task(runtime.sessions.until_ended(request))
    else:
        revoked = asyncio.create_task(runtime.tokens.until_revoked(authorization))
    try:
        yield revoked
    finally:
        revoked.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await revoked


def runtime_context(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_: web.Application) -> AsyncIterator[None]:
        await runtime.open()
        try:
            yield
        finally:
            await runtime.close()

    return context


# How long a cancelled background task may take to end before the stop goes on without it.
CANCEL_GRACE_S = 5.0


def background_task(
    name: str, factory: Callable[[], Coroutine[Any, Any, None]], *, on_stop: Callable[[], None] | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A task held for the life of the app: started after its resources, cancelled before they close.

    With `on_stop`, the task is first asked to stop and given a few seconds to finish cleanly.
    """

    async def context(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_supervised(name, factory), name=name)
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), timeout=10)
            task.cancel()
            # A task stuck in a library call that swallows the cancellation (a Kafka client leaving a
            # group the broker is rebalancing) must not hold the whole stop: it is left behind.
            await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
            if not task.done():
                log.warning("background.stop_abandoned", task=name)
            elif not task.cancelled() and task.exception() is not None:
                log.warning("background.stopped_with_error", task=name, error=repr(task.exception()))

    return context


def periodic_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    name: str,
    job: Callable[[AsyncSession], Awaitable[int]],
    *,
    interval_s: float,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A loop that runs `job` in a transaction of its own every `interval_s`, logging what it did.

    `job` answers how many records it handled; while it handles any, the next run follows at once
    (a job works in batches), otherwise it waits the interval.
    """

    async def run() -> None:
        while True:
            async with sessionmaker() as session, session.begin():
                done = await job(session)
            if done:
                log.info(name, records=done)
                continue
            await asyncio.sleep(interval_s)

    return run


async def _supervised(name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Restart a background loop that died of an unexpected error instead of leaving the service half-dead."""
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background.crashed", task=name)
            await asyncio.sleep(1.0)


def serve(create_app: Callable[[], web.Application], *, host: str, port: int, grace_s: float = 20.0) -> None:
    """Run until SIGTERM or SIGINT; then stop accepting, finish in-flight requests, close resources.

    The app is built inside the event loop, because Kafka clients bind to the loop they are made in.
    """

    async def main() -> None:
        log.info("service.starting")  # the code is imported: what follows is the service's own start
        app = create_app()
        runner = ProblemAppRunner(app, handle_signals=False, shutdown_timeout=grace_s, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        log.info("service.started", host=host, port=port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("service.stopping")
        await runner.cleanup()
        log.info("service.stopped")

    asyncio.run(main())
