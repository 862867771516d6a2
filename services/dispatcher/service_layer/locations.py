"""Location reports, the highest-rate traffic: held in memory briefly, written and published in batches.

A report answered 202 is in this process's `LocationBuffer`; the flusher commits everything buffered
every `location_flush_interval_ms` (50 ms by default) in ONE transaction: one UPDATE of all the
volunteers reported since the last flush and, in the same statement, their
`volunteer.location_reported` outbox rows, which the one outbox relay publishes as it does any other
event. Durability window: a SIGTERM flushes the buffer before the process exits, but a kill -9, an
OOM kill or a power cut loses the reports of the last flush interval plus the flush in flight
(about 100 ms). That is accepted: a location is ephemeral and every app re-sends it every few
seconds, so the next report repairs the loss. Nothing else in the dispatcher is buffered this way.

Per flush, each volunteer contributes their newest fix only (by `at`, never an older one over a
newer one, neither in the buffer nor in the database), and one event per volunteer per flush is
published, for the fix that actually moved their known position forward. Fixes superseded within
the same 50 ms carry nothing the topic's readers (ops' map, analytics) could use, and coalescing
caps the topic at one event per volunteer per flush however fast a misbehaving app sends; a
late-arriving older fix publishes nothing, so the topic never walks anyone backwards.

Once a flush has committed, the legs its volunteers have under way are re-estimated in a second,
short transaction (`service_layer/eta.py`): it locks legs after the volunteers' rows are released,
keeping the legs-before-volunteers lock order, and skips a leg another transaction holds. A refresh
that fails is logged and left to the next fix; it never puts the fixes back.

The buffer is bounded by the number of volunteers it holds: when full (the database has been away
long enough, or cannot keep up), new reports get 503 with Retry-After, while a volunteer already
buffered just replaces their fix. Failed flushes go back into the buffer and are retried, unless
the database refuses a value (a data error, which no retry mends): then the fixes are written one by
one and the one it refuses is dropped, logged and counted, so it cannot stop everyone's flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters import repository
from services.dispatcher.domain.eta import EtaPolicy
from services.dispatcher.service_layer.eta import refresh_etas
from shared.backoff import Backoff
from shared.db import is_data_error
from shared.events import VolunteerLocationReported, build_event
from shared.metrics import LOCATION_FIXES_DROPPED

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Fix:
    """Where a volunteer's app says they were, and when."""

    lat: float
    lon: float
    accuracy_m: float | None
    at: datetime


class LocationBufferFull(Exception):
    """No room for another volunteer's report now (or the process is stopping): come back shortly."""


class LocationBuffer:
    """The newest unflushed fix per volunteer, bounded by how many volunteers it holds.

    Not thread-safe; one event loop adds and takes.
    """

    def __init__(self, *, capacity: int) -> None:
        self._capacity = capacity
        self._pending: dict[uuid.UUID, Fix] = {}
        self._in_flight = 0
        self._closed = False
        self.wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, volunteer_id: uuid.UUID, fix: Fix) -> None:
        """Keep `fix` unless a newer one for this volunteer waits already; LocationBufferFull if no room."""
        if self._closed:
            raise LocationBufferFull("stopping")
        current = self._pending.get(volunteer_id)
        if current is not None:
            if fix.at >= current.at:
                self._pending[volunteer_id] = fix
            return
        # The batch being written counts too, so memory stays bounded while the database is slow.
        if len(self._pending) + self._in_flight >= self._capacity:
            raise LocationBufferFull("full")
        self._pending[volunteer_id] = fix

    def take(self) -> dict[uuid.UUID, Fix]:
        """Everything waiting, to write; call `done` or `restore` with it afterwards."""
        batch, self._pending = self._pending, {}
        self._in_flight += len(batch)
        return batch

    def done(self, batch: dict[uuid.UUID, Fix]) -> None:
        self._in_flight -= len(batch)

    def restore(self, batch: dict[uuid.UUID, Fix]) -> None:
        """Put a batch that could not be written back, behind any newer fix that arrived meanwhile."""
        self._in_flight -= len(batch)
        for volunteer_id, fix in batch.items():
            current = self._pending.get(volunteer_id)
            if current is None or fix.at > current.at:
                self._pending[volunteer_id] = fix

    def close(self) -> None:
        """Refuse new reports and have the flusher write what is left, then stop."""
        self._closed = True
        self.wake.set()


def fix_from_report(*, lat: float, lon: float, accuracy_m: float | None, at: datetime | None) -> Fix:
    """A fix dated in the future (a phone clock running ahead) counts as now: it cannot hide later ones."""
    now = datetime.now(UTC)
    return Fix(lat=lat, lon=lon, accuracy_m=accuracy_m, at=now if at is None or at > now else at)


async def write_fixes(session: AsyncSession, batch: dict[uuid.UUID, Fix]) -> None:
    """Apply a batch of newest fixes and queue their events, in the caller's transaction."""
    if not batch:
        return
    ids = sorted(batch)  # a stable order keeps two replicas' flushes from locking rows crosswise
    event_ids: list[uuid.UUID] = []
    payloads: list[bytes] = []
    topic = event_type = ""
    for volunteer_id in ids:
        fix = batch[volunteer_id]
        topic, event = build_event(
            VolunteerLocationReported(
                volunteer_id=volunteer_id, lat=fix.lat, lon=fix.lon, accuracy_m=fix.accuracy_m, at=fix.at
            ),
            source="/dispatcher",
            subject=volunteer_id,
        )
        event_type = event.type
        event_ids.append(event.id)
        payloads.append(event.to_bytes())
    await repository.record_fixes(
        session,
        volunteer_ids=ids,
        fixes=[(batch[i].lat, batch[i].lon, batch[i].at) for i in ids],
        event_ids=event_ids,
        payloads=payloads,
        event_type=event_type,
        topic=topic,
    )


class LocationFlusher:
    """The background loop that empties a `LocationBuffer` into the database every interval."""

    def __init__(
        self,
        buffer: LocationBuffer,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        interval_s: float = 0.05,
        final_flush_s: float = 8.0,
        eta: EtaPolicy | None = None,
    ) -> None:
        self._buffer = buffer
        self._eta = eta
        self._sessionmaker = sessionmaker
        self._interval_s = interval_s
        self._final_flush_s = final_flush_s

    async def flush(self) -> int:
        """Write what is buffered now and say how many fixes were written.

        On failure the batch goes back into the buffer and the error propagates, except for a value
        the database refuses: then each fix is tried on its own and the refused ones are dropped.
        """
        batch = self._buffer.take()
        if not batch:
            self._buffer.done(batch)
            return 0
        try:
            async with self._sessionmaker() as session, session.begin():
                await write_fixes(session, batch)
        except BaseException as exc:
            if isinstance(exc, Exception) and is_data_error(exc):
                return await self._write_one_by_one(batch)
            self._buffer.restore(batch)
            raise
        self._buffer.done(batch)
        await self.refresh_etas(list(batch))
        return len(batch)

    async def refresh_etas(self, volunteer_ids: list[uuid.UUID]) -> None:
        """Re-estimate the legs these volunteers have under way, from the fixes just written."""
        if self._eta is None or not volunteer_ids:
            return
        try:
            async with self._sessionmaker() as session, session.begin():
                changes = await refresh_etas(
                    session, volunteer_ids=sorted(volunteer_ids), now=datetime.now(UTC), policy=self._eta
                )
                await changes.flush(session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("locations.eta_refresh_failed", volunteers=len(volunteer_ids), error=repr(exc))

    async def _write_one_by_one(self, batch: dict[uuid.UUID, Fix]) -> int:
        """Each fix in its own transaction, dropping those the database refuses; the rest as `flush`."""
        unwritten = dict(batch)
        written = 0
        try:
            for volunteer_id, fix in batch.items():
                one = {volunteer_id: fix}
                try:
                    async with self._sessionmaker() as session, session.begin():
                        await write_fixes(session, one)
                    written += 1
                except Exception as exc:
                    if not is_data_error(exc):
                        raise
                    LOCATION_FIXES_DROPPED.inc()
                    log.error("locations.fix_dropped", volunteer_id=str(volunteer_id), error=repr(exc))
                del unwritten[volunteer_id]
                self._buffer.done(one)
        except BaseException:
            self._buffer.restore(unwritten)
            raise
        await self.refresh_etas(list(batch))
        return written

    async def run(self) -> None:
        """Flush every interval until the buffer is closed, then flush what is left (retrying for a while)."""
        buffer = self._buffer
        # After a failed flush the next one waits longer, from 0.1 s up to 2 s; a success goes back
        # to flushing every interval.
        backoff = Backoff(first=0.1, most=2.0)
        wait_s = self._interval_s
        while not buffer.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(buffer.wake.wait(), timeout=wait_s)
            try:
                await self.flush()
                backoff.succeeded()
                wait_s = self._interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("locations.flush_failed", buffered=len(buffer), error=repr(exc))
                wait_s = max(wait_s, backoff.next_delay())
        deadline = time.monotonic() + self._final_flush_s
        while len(buffer):
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() >= deadline:
                    log.error("locations.lost_on_stop", reports=len(buffer), error=repr(exc))
                    return
                await asyncio.sleep(0.2)
