"""The read-model benchmark's two ways of folding leave the same read model, on the real database."""

from __future__ import annotations

from bench.progress_fold import measure_async
from tests.conftest import Stack


async def test_folding_in_batches_and_one_at_a_time_leave_the_same_read_model(stack: Stack) -> None:
    figures = await measure_async(stack.settings(), tasks=7, batch=4)
    assert figures["same_read_model"]
    assert figures["events"] == 28
    for way in ("one_at_a_time", "batched"):
        assert figures[way]["events_per_s"] > 0 and figures[way]["cpu_ms_per_event"] > 0
