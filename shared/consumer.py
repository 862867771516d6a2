"""The one consumer loop: inbox de-duplication, manual commits after the database, dead-lettering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.protocol.group import LeaveGroupRequest
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, MetaData, Table, Text, delete, func
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.backoff import Backoff
from shared.db import is_connection_error, is_data_error
from shared.events import DEADLETTER_TOPIC, CloudEvent, DeadLetterHeader, current_traceparent
from shared.metrics import CONSUMER_LAG, DEADLETTERED, EVENTS_CONSUMED, HANDLER_FAILURES
from shared.settings import Settings

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
# The same work as a `Handler` for several fresh events in a row, in order, of the types given this
# handler: see `EventConsumer`'s `batch_handlers`.
BatchHandler = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]


def inbox_table(metadata: MetaData) -> Table:
    """Event ids a consumer group has applied, written in the same transaction as the effect."""
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class PermanentError(Exception):
    """A record that can never be handled (malformed, contradicts what we know): dead-letter at once."""


@contextlib.contextmanager
def _event_context(event: CloudEvent) -> Iterator[None]:
    """While an event is handled: its ids in every log line, its trace for the events it causes."""
    bound = {"event_id": str(event.id), "event_type": event.type, "task_id": event.subject}
    if event.traceparent and event.traceparent.count("-") == 3:
        bound["trace_id"] = event.traceparent.split("-")[1]
    if isinstance(event.data.get("leg_id"), str):
        bound["leg_id"] = event.data["leg_id"]
    trace_token = current_traceparent.set(event.traceparent)
    try:
        with structlog.contextvars.bound_contextvars(**bound):
            yield
    finally:
        current_traceparent.reset(trace_token)


class NotReady(Exception):
    """A part of the service is not doing its work yet; `/readyz` says which and why."""


class _Abandoned(Exception):
    """Stopping while a record cannot be applied: leave its offset uncommitted for redelivery."""


class _Retry(NamedTuple):
    """A record's attempt failed and it is worth another: the failures counted, the wait before it."""

    failures: int
    wait_s: float


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: EventConsumer) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._loop.abandon_retries(revoked)
        await self._loop.commit_processed()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("consumer.assigned", group=self._loop.group_id, partitions=len(assigned))
        self._loop.assigned(assigned)


def _first_generation_member(consumer: AIOKafkaConsumer) -> tuple[int, str] | None:
    """The coordinator and member id if `consumer` is a member of generation 0 (see `_leave`)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "generation", None) != 0:
        return None
    member_id, coordinator_id = getattr(coordinator, "member_id", ""), coordinator.coordinator_id
    if not member_id or coordinator_id is None:
        return None
    return int(coordinator_id), str(member_id)


class EventConsumer:
    """Consume topics as one consumer group, applying each event exactly once to the database.

    For every record: in one transaction, record its event id in the inbox (skipping it if already
    there) and run the handler for its type; only after that commit is the offset committed. A
    failing record is retried a bounded number of times, then sent to the dead-letter topic with
    its origin in headers, and its partition moves on; a record the database refuses as data
    (SQLSTATE class 22, a value out of range) is dead-lettered at once, since no retry mends it.

    The retries run aside, in a task of their own, with their partition paused until they are over,
    so the other partitions go on: one organisation's poison never holds everyone's events back.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        group_id: str,
        topics: tuple[str, ...],
        handlers: Mapping[str, Handler],
        sessionmaker: async_sessionmaker[AsyncSession],
        inbox: Table,
        producer: AIOKafkaProducer,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
    ) -> None:
        self.group_id = group_id
        self._settings = settings
        self._topics = topics
        self._handlers = handlers
        # Optional: for a type whose events are cheaper applied together (one statement for many),
        # a fetched batch's consecutive fresh events of it go to this in one call. The handler of
        # `handlers` stays the one for an event on its own and for the one-by-one fallback.
        self._batch_handlers = batch_handlers or {}
        self._sessionmaker = sessionmaker
        self._inbox = inbox
        self._producer = producer
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self._retrying: dict[TopicPartition, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        # Readiness: the partitions of the latest assignment (None before the first), the end offsets
        # they had then, and whether this loop has once applied everything up to those ends.
        self._assignment: list[TopicPartition] | None = None
        self._catch_up_to: dict[TopicPartition, int] | None = None
        self._caught_up = False

    def stop(self) -> None:
        """Finish the record in hand, commit, and leave the group."""
        self._stopping.set()

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """The group gave this loop `partitions` (maybe none: more members than partitions)."""
        self._assignment = list(partitions)
        self._catch_up_to = None

    async def readiness(self) -> None:
        """Raise NotReady until this loop owns its partitions and has applied what they held when it
        got them; from then on it stays ready (a later rebalance is ordinary work, not a new start)."""
        if self._caught_up:
            return
        consumer, assignment = self._consumer, self._assignment
        if consumer is None or assignment is None:
            raise NotReady(f"consumer {self.group_id}: no partitions assigned yet")
        if self._catch_up_to is None:
            self._catch_up_to = dict(await consumer.end_offsets(assignment)) if assignment else {}
        behind = 0
        for tp, end in self._catch_up_to.items():
            done = self._processed.get(tp)
            if done is None:
                done = await consumer.committed(tp) or 0
            if done < end:
                behind += end - done
        if behind:
            raise NotReady(f"consumer {self.group_id}: {behind} records behind where it started")
        self._caught_up = True
        log.info("consumer.caught_up", group=self.group_id, partitions=len(assignment))

    async def run(self) -> None:
        backoff = Backoff(first=0.5, most=10.0)
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                group_id=self.group_id,
                client_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=200,
                session_timeout_ms=self._settings.consumer_session_timeout_ms,
                heartbeat_interval_ms=self._settings.consumer_heartbeat_interval_ms,
                max_poll_interval_ms=300_000,
                fetch_max_wait_ms=self._settings.consumer_fetch_max_wait_ms,
            )
            consumer.subscribe(list(self._topics), listener=_CommitOnRevoke(self))
            self._consumer = consumer
            try:
                await consumer.start()
                backoff.succeeded()
                await self._poll(consumer)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("consumer.broker_error", group=self.group_id, error=str(exc))
            finally:
                await self.abandon_retries(
                    list(self._retrying), grace_s=5.0 if self._stopping.is_set() else 0.0
                )
                with contextlib.suppress(Exception):
                    await self.commit_processed()
                first_generation = _first_generation_member(consumer)
                with contextlib.suppress(Exception):
                    await consumer.stop()
                if first_generation is not None and self._stopping.is_set():
                    await self._leave(*first_generation)
                self._consumer = None
                self._processed.clear()
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff.next_delay())

    async def _leave(self, coordinator_id: int, member_id: str) -> None:
        """Leave the group as a member of generation 0, which aiokafka's `stop` does not do.

        Kafka numbers a group's generations from 1; Tansu, the embedded broker, from 0, and aiokafka
        sends LeaveGroup only from generation 1 on. Without it the member stays until its session
        times out and a dispatcher restarted at once waits on it to get the partitions back. The
        consumer's own connection is closed by then: the producer's reaches the same broker.
        """
        try:
            await self._producer.client.send(coordinator_id, LeaveGroupRequest(self.group_id, member_id))
            log.info("consumer.left", group=self.group_id, generation=0)
        except Exception as exc:
            log.warning("consumer.leave_failed", group=self.group_id, error=repr(exc))

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        loop = asyncio.get_running_loop()
        next_lag_report = loop.time()
        next_inbox_purge = loop.time() + 60.0
        while not self._stopping.is_set():
            # While a partition retries aside, come back often to resume it as soon as it is done.
            batches = await consumer.getmany(timeout_ms=50 if self._retrying else 500, max_records=200)
            if len(batches) > 1 and await self._handle_batch(
                [r for records in batches.values() for r in records]
            ):
                # Every partition's records of this fetch in one transaction: at a steady trickle
                # most fetches bring a record or two from each partition.
                for tp, records in batches.items():
                    self._processed[tp] = records[-1].offset + 1
                batches = {}
            for tp, records in batches.items():
                if self._stopping.is_set():
                    break
                await self._handle_partition(consumer, tp, records)
            try:
                self._resume_retried(consumer)
            except _Abandoned:
                break
            await self.commit_processed()
            if loop.time() >= next_inbox_purge:
                next_inbox_purge = loop.time() + 3600.0
                await self._purge_inbox()
            if loop.time() >= next_lag_report:
                await self._observe_lag(consumer)
                next_lag_report = loop.time() + 1.0

    async def _handle_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[Any]
    ) -> None:
        """Apply one partition's fetched records in order; from the first that fails, go on aside."""
        if len(records) > 1 and await self._handle_batch(records):
            self._processed[tp] = records[-1].offset + 1
            return
        for index, record in enumerate(records):
            if self._stopping.is_set():
                return
            retry = await self._handle_record(record, patient=False)
            if retry is not None:
                # Paused, the partition fetches nothing more until its records in hand are done.
                consumer.pause(tp)
                self._retrying[tp] = asyncio.create_task(
                    self._finish_partition(tp, records[index:], retry),
                    name=f"retry {tp.topic}-{tp.partition}",
                )
                return
            self._processed[tp] = record.offset + 1

    async def _finish_partition(self, tp: TopicPartition, records: list[Any], retry: _Retry | None) -> None:
        """Retry the first record until applied or dead-lettered, then apply the ones behind it."""
        for record in records:
            if self._stopping.is_set():
                raise _Abandoned
            await self._handle_record(record, after=retry)
            retry = None
            self._processed[tp] = record.offset + 1

    def _resume_retried(self, consumer: AIOKafkaConsumer) -> None:
        """Resume the partitions whose records in hand are all done; _Abandoned if one gave up to stop."""
        for tp, task in list(self._retrying.items()):
            if not task.done():
                continue
            del self._retrying[tp]
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                raise error
            if tp in consumer.assignment():
                consumer.resume(tp)

    async def abandon_retries(self, partitions: list[TopicPartition], *, grace_s: float = 0.0) -> None:
        """Stop the retries aside of these partitions (revoked, or the loop ends): left uncommitted.

        Within `grace_s` a retry may finish the attempt in hand (it gives up at its next wait when
        stopping); then it is cancelled. Whoever reads the partition next applies what is left, and
        the inbox skips what was applied already.
        """
        tasks = [self._retrying.pop(tp) for tp in partitions if tp in self._retrying]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _purge_inbox(self) -> None:
        """Forget event ids older than the retention: the topics no longer hold those events."""
        inbox = self._inbox
        try:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(
                    delete(inbox).where(
                        inbox.c.consumer == self.group_id,
                        inbox.c.received_at
                        < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, self._settings.inbox_retention_s),
                    )
                )
        except Exception as exc:
            log.warning("inbox.purge_failed", group=self.group_id, error=repr(exc))

    async def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag from what the fetcher already knows (high watermark and position), once a second."""
        for tp in consumer.assignment():
            # A rebalance may take the partition away between the listing and these calls.
            try:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                position = await asyncio.wait_for(consumer.position(tp), timeout=0.1)
            except (TimeoutError, KafkaError, AssertionError):
                continue
            # Some brokers report a high watermark below the true end: lag is never shown negative.
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(max(0, highwater - position))

    async def commit_processed(self) -> None:
        """Commit the offsets of records whose effects are durable (also called on revoke)."""
        consumer = self._consumer
        if consumer is None or not self._processed:
            return
        offsets, self._processed = dict(self._processed), {}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another member: it re-reads them and the inbox skips repeats.
            log.warning("consumer.commit_failed", group=self.group_id, error=str(exc))

    async def _handle_batch(self, records: list[Any]) -> bool:
        """Apply fetched records in ONE transaction, each partition's in order; False leaves them to
        `_handle_partition` (several partitions' records) or `_handle_record` (one partition's).

        One transaction per record made a busy service take in only a few events a second: each
        paid its own round trips and waited its turn on the event loop for every one of them. Here
        the inbox ids are inserted together and each fresh event's handler runs in order, with a
        clean identity map, as it would in its own session; consecutive fresh events whose types share
        a batch handler go to it in one call (one statement for many rows while a backlog is caught
        up with). Anything unusual (a malformed record, a failing handler, the database away) rolls
        the whole batch back and returns False: the records are then taken one at a time, with the
        retries, outage waits and dead-lettering of each, exactly as if the batch had never been
        tried.
        """
        events: list[tuple[Any, CloudEvent]] = []
        for record in records:
            try:
                events.append((record, CloudEvent.from_bytes(record.value)))
            except (ValidationError, ValueError, TypeError):
                return False
        handled = [(record, event) for record, event in events if event.type in self._handlers]
        outcomes: list[tuple[Any, CloudEvent, str]] = []
        try:
            async with self._sessionmaker() as session, session.begin():
                fresh: set[Any] = set()
                if handled:
                    fresh = set(
                        await session.scalars(
                            insert(self._inbox)
                            .values([{"consumer": self.group_id, "event_id": e.id} for _, e in handled])
                            .on_conflict_do_nothing()
                            .returning(self._inbox.c.event_id)
                        )
                    )
                together: list[CloudEvent] = []  # consecutive fresh events of one batch handler

                async def apply_together() -> None:
                    if together:
                        await self._batch_handlers[together[0].type](session, list(together))
                        await session.flush()
                        session.expunge_all()
                        together.clear()

                for record, event in handled:
                    if event.id not in fresh:
                        outcomes.append((record, event, "duplicate"))
                        continue
                    fresh.discard(event.id)  # the same event twice in one batch applies once
                    batch_handler = self._batch_handlers.get(event.type)
                    if together and self._batch_handlers[together[0].type] is not batch_handler:
                        await apply_together()
                    if batch_handler is not None:
                        together.append(event)
                        outcomes.append((record, event, "applied"))
                        continue
                    with _event_context(event):
                        await self._handlers[event.type](session, event)
                    await session.flush()
                    session.expunge_all()
                    outcomes.append((record, event, "applied"))
                await apply_together()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("consumer.batch_fallback", group=self.group_id, records=len(records), error=repr(exc))
            return False
        for _, event in events:
            if event.type not in self._handlers:
                EVENTS_CONSUMED.labels(self.group_id, event.type, "ignored").inc()
        for record, event, outcome in outcomes:
            EVENTS_CONSUMED.labels(self.group_id, event.type, outcome).inc()
            with _event_context(event):
                log.info("event.handled", outcome=outcome, partition=record.partition, offset=record.offset)
        return True

    async def _handle_record(
        self, record: Any, *, patient: bool = True, after: _Retry | None = None
    ) -> _Retry | None:
        """Apply, skip or dead-letter `record`, retrying if `patient` (first waiting, `after` a failure).

        Not `patient`: one attempt, and if it failed but is worth another, the `_Retry` to go on with.
        """
        try:
            event = CloudEvent.from_bytes(record.value)
        except (ValidationError, ValueError, TypeError) as exc:
            await self._deadletter(record, error=f"malformed CloudEvent: {exc}", attempts=1, event_type="?")
            return None
        handler = self._handlers.get(event.type)
        if handler is None:
            EVENTS_CONSUMED.labels(self.group_id, event.type, "ignored").inc()
            return None
        retry = after
        with _event_context(event):
            while True:
                if retry is not None:
                    await self._wait_to_retry(retry)
                retry = await self._attempt(record, event, handler, failures=retry.failures if retry else 0)
                if retry is None or not patient:
                    return retry

    async def _wait_to_retry(self, retry: _Retry) -> None:
        """Wait before another attempt; _Abandoned if stopping: the record is left for redelivery."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=retry.wait_s)
        if self._stopping.is_set():
            raise _Abandoned

    async def _attempt(
        self, record: Any, event: CloudEvent, handler: Handler, *, failures: int
    ) -> _Retry | None:
        """Apply `event` once: None when applied, skipped or dead-lettered, else how to retry it."""
        try:
            outcome = await self._apply(event, handler)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_connection_error(exc):
                # The database is away, not the record at fault: wait for it, don't count it.
                log.warning("event.database_unavailable", error=repr(exc))
                return _Retry(failures, 1.0)
            failures += 1
            HANDLER_FAILURES.labels(self.group_id, event.type).inc()
            permanent = isinstance(exc, PermanentError | ValidationError) or is_data_error(exc)
            if permanent or failures >= self._settings.consumer_max_attempts:
                log.error("event.failed", error=repr(exc), attempts=failures)
                await self._deadletter(record, error=repr(exc), attempts=failures, event_type=event.type)
                return None
            log.warning("event.retry", error=repr(exc), attempts=failures)
            return _Retry(failures, self._settings.consumer_retry_backoff_s * 2 ** (failures - 1))
        EVENTS_CONSUMED.labels(self.group_id, event.type, outcome).inc()
        log.info("event.handled", outcome=outcome, partition=record.partition, offset=record.offset)
        return None

    async def _apply(self, event: CloudEvent, handler: Handler) -> str:
        async with self._sessionmaker() as session, session.begin():
            inserted = await session.scalar(
                insert(self._inbox)
                .values(consumer=self.group_id, event_id=event.id)
                .on_conflict_do_nothing()
                .returning(self._inbox.c.event_id)
            )
            if inserted is None:
                return "duplicate"
            await handler(session, event)
        return "applied"

    async def _deadletter(self, record: Any, *, error: str, attempts: int, event_type: str) -> None:
        headers = [
            (DeadLetterHeader.ORIGIN_TOPIC, record.topic.encode()),
            (DeadLetterHeader.ORIGIN_PARTITION, str(record.partition).encode()),
            (DeadLetterHeader.ORIGIN_OFFSET, str(record.offset).encode()),
            (DeadLetterHeader.CONSUMER_GROUP, self.group_id.encode()),
            (DeadLetterHeader.EVENT_TYPE, event_type.encode()),
            (DeadLetterHeader.ERROR, error[:2000].encode()),
            (DeadLetterHeader.ATTEMPTS, str(attempts).encode()),
        ]
        while True:
            try:
                await self._producer.send_and_wait(
                    DEADLETTER_TOPIC, value=record.value, key=record.key, headers=headers
                )
                break
            except KafkaError as exc:
                # Never move past a record that is neither handled nor dead-lettered.
                log.warning("deadletter.publish_failed", error=str(exc))
                await asyncio.sleep(1.0)
        DEADLETTERED.labels(self.group_id, record.topic).inc()
        EVENTS_CONSUMED.labels(self.group_id, event_type, "deadlettered").inc()
