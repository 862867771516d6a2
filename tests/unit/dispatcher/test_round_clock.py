"""When matching rounds start: every window, or at once when an urgent or critical leg comes in."""

from __future__ import annotations

import asyncio

from services.dispatcher.service_layer.matcher import RoundClock

# Sleeps never end early by more than the clock's resolution.
SLACK_S = 0.005


async def test_a_pressing_leg_starts_a_round_long_before_the_window_ends() -> None:
    pressing = asyncio.Event()
    clock = RoundClock(window=60.0, gap=0.01, pressing=pressing)
    asyncio.get_running_loop().call_later(0.05, pressing.set)
    # Without the wake-up this would wait a minute and the wait_for would give up.
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is True
    clock.start(early=True)
    assert not pressing.is_set()


async def test_without_a_pressing_leg_a_round_starts_a_window_after_the_last() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    clock = RoundClock(window=0.2, gap=0.04, pressing=asyncio.Event())
    assert await clock.until_pool_time() is False
    assert loop.time() - began >= 0.16 - SLACK_S  # the pool is built a lead before the round
    await clock.until_round_time()
    assert loop.time() - began >= 0.2 - SLACK_S


async def test_pressing_legs_one_after_another_leave_a_gap_between_rounds() -> None:
    loop = asyncio.get_running_loop()
    pressing = asyncio.Event()
    pressing.set()
    clock = RoundClock(window=60.0, gap=0.1, pressing=pressing)
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is True
    clock.start(early=True)
    first = loop.time()
    pressing.set()
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is True
    assert loop.time() - first >= 0.1 - SLACK_S


async def test_the_windows_count_again_from_an_early_round() -> None:
    loop = asyncio.get_running_loop()
    pressing = asyncio.Event()
    clock = RoundClock(window=0.3, gap=0.05, pressing=pressing)
    await asyncio.sleep(0.2)
    pressing.set()
    assert await clock.until_pool_time() is True
    clock.start(early=True)
    early = loop.time()
    assert await clock.until_pool_time() is False
    await clock.until_round_time()
    assert loop.time() - early >= 0.3 - SLACK_S
