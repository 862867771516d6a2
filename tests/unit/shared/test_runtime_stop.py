"""A background task that will not end when cancelled does not hold up the service's stop."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import runtime


async def test_a_task_that_swallows_its_cancellation_is_left_behind_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "CANCEL_GRACE_S", 0.2)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # as a library call that catches the cancellation and carries on

    context = runtime.background_task("stubborn", stubborn)(None)  # type: ignore[arg-type]
    await context.__anext__()
    await asyncio.sleep(0.01)  # under way
    started = time.monotonic()
    with pytest.raises(StopAsyncIteration):
        await context.__anext__()
    assert time.monotonic() - started >= 0.2, "the stop gave the task its grace"
    (left,) = [task for task in asyncio.all_tasks() if task.get_name() == "stubborn"]
    assert not left.done(), "the stop went on without the task"
    release.set()
    left.cancel()  # swallowed once more, and now it ends
    await left


async def test_a_task_that_ends_when_cancelled_is_awaited() -> None:
    ended = asyncio.Event()

    async def polite() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.set()

    context = runtime.background_task("polite", polite)(None)  # type: ignore[arg-type]
    await context.__anext__()
    await asyncio.sleep(0)
    with pytest.raises(StopAsyncIteration):
        await context.__anext__()
    assert ended.is_set()
