"""The transactional outbox: events are written with the state change, and one relay publishes them."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.backoff import Backoff
from shared.consumer import NotReady
from shared.events import CloudEvent
from shared.listen import PgListener
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED

log = structlog.get_logger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    """The outbox of the schema `metadata` belongs to; an insert trigger NOTIFYs `<schema>_outbox`.

    `published_at` is set instead of deleting the row when the relay keeps published events
    (`outbox_retention_s`); the relay claims through the partial index of rows not yet published.
    """
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("event_type", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )


def relay_lock_key(outbox: Table) -> int:
    """The advisory lock a relay holds while it publishes `outbox`: whoever holds it keeps every
    relay of that outbox from publishing (and so from deleting) its rows."""
    return zlib.crc32(f"errands-outbox:{outbox.schema}".encode())


def notify_channel(outbox: Table) -> str:
    return f"{outbox.schema}_outbox"


# What an outbox row holds of an event, in this order; `id` and `created_at` the database fills in.
EVENT_COLUMNS = ("event_id", "event_type", "topic", "key", "payload")
_SQL_TYPES = {"event_id": "uuid", "event_type": "text", "topic": "text", "key": "text", "payload": "bytea"}


def event_row(topic: str, event: CloudEvent) -> tuple[Any, ...]:
    """An event's outbox values, in the order of `EVENT_COLUMNS`."""
    return (event.id, event.type, topic, event.subject, event.to_bytes())


def insert_event_sql(outbox: Table, *, first_parameter: int, source: str) -> str:
    """`INSERT INTO <outbox> ... SELECT $n... FROM <source>`: one event row for a hand-written statement
    on the driver connection, whose parameters start at `$first_parameter` (values from `event_row`).
    """
    placeholders = ", ".join(
        f"${first_parameter + i}::{_SQL_TYPES[column]}" for i, column in enumerate(EVENT_COLUMNS)
    )
    # Only names from the Table and this module reach the text; the values are parameters.
    return (
        f"INSERT INTO {outbox.schema}.{outbox.name} ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608
        f"SELECT {placeholders} FROM {source}"
    )


async def add_events(session: AsyncSession, outbox: Table, events: Sequence[tuple[str, CloudEvent]]) -> None:
    """Queue events for publishing in the caller's transaction; they are sent only if it commits."""
    if not events:
        return
    await session.execute(
        insert(outbox),
        [dict(zip(EVENT_COLUMNS, event_row(topic, event), strict=True)) for topic, event in events],
    )


class OutboxRelay:
    """Publishes a schema's outbox rows with acks=all, then deletes them (or marks them published).

    Rows are claimed with FOR UPDATE SKIP LOCKED inside a transaction that also holds an advisory
    lock per outbox, so replicas never publish the same row concurrently and one task's events
    leave in the order they were written. A crash between publish and delete re-publishes the
    rows; consumers de-duplicate by event id.

    With a `retention_s` above zero a published row is kept, marked `published_at`, and purged
    once older than the retention: a broker that lost its log (the in-memory one of `make run`)
    can then be sent those events again (`resend_retained`). Zero deletes at once, as a broker
    that keeps its own log needs.
    """

    def __init__(
        self,
        *,
        outbox: Table,
        sessionmaker: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        listener: PgListener,
        batch_size: int = 500,
        idle_poll_s: float = 1.0,
        retention_s: float = 0.0,
    ) -> None:
        self._outbox = outbox
        self._retention_s = retention_s
        self._next_purge = 0.0
        self._sessionmaker = sessionmaker
        self._producer = producer
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._next_observation = 0.0
        self._lock_key = relay_lock_key(outbox)
        self._publishing = False  # its last pass over the outbox went through
        listener.subscribe(notify_channel(outbox), lambda _payload: self._wake.set())

    async def run(self) -> None:
        backoff = Backoff(first=0.2, most=5.0)
        while True:
            self._wake.clear()
            try:
                while await self.publish_batch() == self._batch_size:
                    pass
                backoff.succeeded()
                self._publishing = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._publishing = False
                log.warning("outbox.publish_failed", schema=self._outbox.schema, error=str(exc))
                with contextlib.suppress(Exception):
                    await self.observe_backlog()
                await asyncio.sleep(backoff.next_delay())
                continue
            if time.monotonic() >= self._next_observation:
                self._next_observation = time.monotonic() + 1.0
                with contextlib.suppress(Exception):
                    await self.observe_backlog()
            if self._retention_s > 0 and time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + min(60.0, self._retention_s / 10)
                try:
                    await self.purge_published()
                except Exception as exc:
                    log.warning("outbox.purge_failed", schema=self._outbox.schema, error=str(exc))
            # The poll is a safety net for notifications lost while the listener reconnects.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._idle_poll_s)

    async def observe_backlog(self) -> None:
        """Export how many rows wait and how old the oldest is: the first sign of a broker outage."""
        async with self._sessionmaker() as session:
            count, oldest_age = (
                await session.execute(
                    select(
                        func.count(),
                        func.coalesce(
                            func.extract("epoch", func.now() - func.min(self._outbox.c.created_at)), 0
                        ),
                    )
                    .select_from(self._outbox)
                    .where(self._outbox.c.published_at.is_(None))
                )
            ).one()
        OUTBOX_BACKLOG.labels(self._outbox.schema).set(count)
        OUTBOX_OLDEST_AGE.labels(self._outbox.schema).set(float(oldest_age))

    async def readiness(self) -> None:
        """Raise NotReady unless the relay's last pass over its outbox went through."""
        if not self._publishing:
            raise NotReady(f"outbox relay {self._outbox.schema}: not publishing")

    async def publish_batch(self) -> int:
        """Publish up to one batch of unsent rows; returns how many were sent."""
        outbox = self._outbox
        async with self._sessionmaker() as session, session.begin():
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(self._lock_key))):
                return 0
            rows = (
                await session.execute(
                    select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload, outbox.c.event_type)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            deliveries = [
                await self._producer.send(row.topic, value=row.payload, key=row.key.encode()) for row in rows
            ]
            await asyncio.gather(*deliveries)
            sent = outbox.c.id.in_([row.id for row in rows])
            if self._retention_s > 0:
                await session.execute(update(outbox).where(sent).values(published_at=func.now()))
            else:
                await session.execute(delete(outbox).where(sent))
        for row in rows:
            OUTBOX_PUBLISHED.labels(event_type=row.event_type, topic=row.topic).inc()
        return len(rows)

    async def purge_published(self) -> int:
        """Delete the published rows older than the retention; returns how many went."""
        outbox = self._outbox
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                delete(outbox).where(
                    outbox.c.published_at.is_not(None),
                    outbox.c.published_at < func.now() - _seconds(self._retention_s),
                )
            )
        purged: int = result.rowcount  # type: ignore[attr-defined]
        return purged


def _seconds(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


async def resend_retained(session: AsyncSession, outbox: Table, *, retention_s: float) -> int:
    """Mark the retained events of `outbox` unpublished again, so its relay sends them once more.

    For a broker that came back empty while the database kept its data. Rows past the retention are
    deleted rather than sent: consumers remember applied event ids for longer than the retention
    (`inbox_retention_s`), and only within it can they recognise a copy. Returns the rows to resend.
    """
    await session.execute(
        delete(outbox).where(
            outbox.c.published_at.is_not(None), outbox.c.published_at < func.now() - _seconds(retention_s)
        )
    )
    result = await session.execute(
        update(outbox).where(outbox.c.published_at.is_not(None)).values(published_at=None)
    )
    resent: int = result.rowcount  # type: ignore[attr-defined]
    return resent
