"""Wakes a volunteer's waiting long polls when the database says their assignments changed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from shared.listen import PgListener


class VolunteerWakeups:
    """Idle waiters are plain asyncio Events: thousands of waiting polls cost no CPU."""

    def __init__(self, listener: PgListener, channel: str) -> None:
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}
        # Set when the app stops: woken polls answer 304 at once instead of reading state again.
        self.closing = False
        listener.subscribe(channel, self._on_notify)

    def _on_notify(self, payload: str) -> None:
        if not payload:  # the listener reconnected: anything may have changed meanwhile
            self.wake_all()
            return
        try:
            volunteer_id = uuid.UUID(payload)
        except ValueError:
            return
        for event in self._waiters.get(volunteer_id, ()):
            event.set()

    def close(self) -> None:
        """The app is stopping: every waiting poll wakes and answers now."""
        self.closing = True
        self.wake_all()

    def wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    @contextmanager
    def waiter(self, volunteer_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """Register before reading state, so a change between the read and the wait is not missed."""
        event = asyncio.Event()
        self._waiters.setdefault(volunteer_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiters.get(volunteer_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[volunteer_id]
