"""How long to wait before trying again: one rule for every retry loop that talks to PostgreSQL or Kafka."""

from __future__ import annotations


class Backoff:
    """Delays that start at `first`, grow by `factor` after each failure up to `most`, and start over
    after a success."""

    def __init__(self, *, first: float, most: float, factor: float = 2.0) -> None:
        self._first = first
        self._most = most
        self._factor = factor
        self._current = first

    def next_delay(self) -> float:
        """The delay before the next try; each call after a failure is longer, up to `most`."""
        delay = self._current
        self._current = min(self._current * self._factor, self._most)
        return delay

    def succeeded(self) -> None:
        """The next failure waits `first` again."""
        self._current = self._first
