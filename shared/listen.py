"""PostgreSQL LISTEN/NOTIFY on one dedicated connection per process, reconnecting by itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

import asyncpg
import structlog

from shared.backoff import Backoff

log = structlog.get_logger(__name__)

Callback = Callable[[str], None]


class PgListener:
    """Fan notifications from a few channels out to in-process callbacks.

    Callbacks run on the event loop and must be cheap (set an Event, wake a waiter). After a
    reconnect every callback is called with an empty payload, because notifications sent while
    the connection was down are lost and waiters must look again.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._callbacks: dict[str, list[Callback]] = defaultdict(list)
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, channel: str, callback: Callback) -> None:
        """Register before `start`; channels are fixed for the life of the listener."""
        self._callbacks[channel].append(callback)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _dispatch(self, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            # One callback's error must not cost the others their notification, nor (raised into
            # the connection's loop) the connection itself.
            try:
                callback(payload)
            except Exception as exc:
                log.error("pg_listener.callback_failed", channel=channel, error=repr(exc))

    async def _run(self) -> None:
        backoff = Backoff(first=0.2, most=5.0)
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn, timeout=10)
                for channel in self._callbacks:
                    await connection.add_listener(
                        channel, lambda _c, _pid, channel, payload: self._dispatch(channel, payload)
                    )
                self._connected.set()
                backoff.succeeded()
                for channel in self._callbacks:
                    self._dispatch(channel, "")
                # asyncpg delivers notifications through the callbacks; we only watch the connection.
                while not connection.is_closed():
                    await asyncio.sleep(1.0)
                    await connection.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pg_listener.disconnected", error=str(exc))
            finally:
                self._connected.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), timeout=2)
            await asyncio.sleep(backoff.next_delay())
