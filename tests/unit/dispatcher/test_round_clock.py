"""When matching rounds start: every window; sooner once a full batch of legs came in; at once
when an urgent or critical leg comes in."""

from __future__ import annotations

import asyncio

import pytest

from services.dispatcher.service_layer.matcher import RoundClock

# Sleeps never end early by more than the clock's resolution.
SLACK_S = 0.005


async def test_a_pressing_leg_starts_a_round_long_before_the_window_ends() -> None:
    clock = RoundClock(window=60.0, gap=0.01)
    asyncio.get_running_loop().call_later(0.05, clock.press)
    # Without the wake-up this would wait a minute and the wait_for would give up.
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is True
    clock.start()
    # The press was spent on that round: the next one waits for its window again.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(clock.until_pool_time(), timeout=0.2)


async def test_a_pressing_leg_taken_in_while_the_pool_is_built_does_not_wait_for_the_window() -> None:
    clock = RoundClock(window=60.0, gap=0.01)
    clock.lead = 59.9
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is False
    asyncio.get_running_loop().call_later(0.05, clock.press)
    await asyncio.wait_for(clock.until_round_time(), timeout=20)


async def test_without_a_pressing_leg_a_round_starts_a_window_after_the_last() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    clock = RoundClock(window=0.2, gap=0.04)
    assert await clock.until_pool_time() is False
    assert loop.time() - began >= 0.16 - SLACK_S  # the pool is built a lead before the round
    await clock.until_round_time()
    assert loop.time() - began >= 0.2 - SLACK_S


async def test_pressing_legs_one_after_another_leave_a_gap_between_rounds() -> None:
    loop = asyncio.get_running_loop()
    clock = RoundClock(window=60.0, gap=0.1)
    clock.press()
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is True
    clock.start()
    first = loop.time()
    clock.press()
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is True
    assert loop.time() - first >= 0.1 - SLACK_S


async def test_the_windows_count_again_from_an_early_round() -> None:
    loop = asyncio.get_running_loop()
    clock = RoundClock(window=0.3, gap=0.05)
    await asyncio.sleep(0.2)
    clock.press()
    assert await clock.until_pool_time() is True
    clock.start()
    early = loop.time()
    assert await clock.until_pool_time() is False
    await clock.until_round_time()
    assert loop.time() - early >= 0.3 - SLACK_S


async def test_a_full_batch_starts_a_round_long_before_the_window_ends_its_pool_built_at_half() -> None:
    loop = asyncio.get_running_loop()
    clock = RoundClock(window=60.0, gap=0.01, full=50)
    loop.call_later(0.05, clock.taken_in, 20)
    loop.call_later(0.10, clock.taken_in, 10)  # half the batch: time for the pool
    loop.call_later(0.30, clock.taken_in, 20)  # the batch is full: the round
    began = loop.time()
    # Not pressing: the pool is built ahead as for a round on time, then the round waits for it.
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is False
    assert 0.1 - SLACK_S <= loop.time() - began < 0.3
    await asyncio.wait_for(clock.until_round_time(), timeout=20)
    assert loop.time() - began >= 0.3 - SLACK_S
    clock.start()
    # The count starts again with the round: what came before it does not fill the next batch.
    clock.taken_in(49)
    # Past half, so the pool is due after the gap, not a 60 s window later...
    assert await asyncio.wait_for(clock.until_pool_time(), timeout=20) is False
    round_time = asyncio.create_task(clock.until_round_time())
    await asyncio.sleep(0.2)
    assert not round_time.done()  # ...but the round waits for the fiftieth leg or the window
    clock.taken_in(1)
    await asyncio.wait_for(round_time, timeout=20)


async def test_a_full_batch_waits_for_the_gap_after_the_last_round() -> None:
    loop = asyncio.get_running_loop()
    clock = RoundClock(window=60.0, gap=0.2, full=10)
    clock.start()
    began = loop.time()
    clock.taken_in(10)
    await asyncio.wait_for(clock.until_pool_time(), timeout=20)
    await asyncio.wait_for(clock.until_round_time(), timeout=20)
    assert loop.time() - began >= 0.2 - SLACK_S


async def test_with_full_batches_off_any_number_of_legs_waits_for_the_window() -> None:
    loop = asyncio.get_running_loop()
    clock = RoundClock(window=0.3, gap=0.01, full=0)
    began = loop.time()
    clock.taken_in(10_000)
    assert await clock.until_pool_time() is False
    await clock.until_round_time()
    assert loop.time() - began >= 0.3 - SLACK_S


async def test_a_full_batch_leaves_the_matcher_half_its_time_after_a_long_pool_and_round() -> None:
    loop = asyncio.get_running_loop()
    clock = RoundClock(window=60.0, gap=0.01, full=10)
    clock.pool_took(0.1)
    clock.start()
    began = loop.time()
    await asyncio.sleep(0.05)
    clock.finish()  # a pool of 0.1 s and a round of 0.05 s: no early round before 0.3 s
    clock.taken_in(10)
    await asyncio.wait_for(clock.until_pool_time(), timeout=20)
    await asyncio.wait_for(clock.until_round_time(), timeout=20)
    assert loop.time() - began >= 0.3 - SLACK_S
