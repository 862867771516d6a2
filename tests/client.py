"""What every test does as a client of the running system: send a token, and wait for an outcome."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


def bearer(token: str) -> dict[str, str]:
    """The `Authorization` header that presents `token`."""
    return {"Authorization": f"Bearer {token}"}


@overload
async def until(
    predicate: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float,
    what: str = ...,
    every_s: float = ...,
) -> T: ...


@overload
async def until(
    predicate: Callable[[], T | None], *, timeout_s: float, what: str = ..., every_s: float = ...
) -> T: ...


async def until(
    predicate: Callable[[], object],
    *,
    timeout_s: float,
    what: str = "condition",
    every_s: float = 0.2,
) -> object:
    """Poll `predicate` (plain or async) every `every_s` until its answer is truthy and not a string.

    That answer is returned. A string describes progress so far (e.g. "3 of 40 legs offered"): the
    timeout bounds a broken run, not a speed target, and counts again from each change of progress,
    so a run on a busy machine that keeps moving is waited for and one that stops fails.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        current = predicate()
        if inspect.isawaitable(current):
            current = await current
        if current and not isinstance(current, str):
            return current
        if isinstance(current, str) and current != last:
            deadline = time.monotonic() + timeout_s
        last = current
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met, no progress for {timeout_s:g} s (last: {last!r})")
        await asyncio.sleep(every_s)
