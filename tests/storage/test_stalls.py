"""`StallWatch` against a real event loop: a blocked loop is measured and reported, with
the garbage collections that ran inside the stall."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from storage.stalls import StallWatch


def block_the_loop(seconds: float) -> None:
    """What a stall is: synchronous work on the event loop's thread (here on purpose)."""
    time.sleep(seconds)


async def test_a_blocked_loop_is_measured_and_logged_with_its_collections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = StallWatch("test", interval_s=0.01, warn_ms=100)
    watch.start()
    try:
        await asyncio.sleep(0.05)  # the watcher is waiting on its timer
        assert watch.worst_lag_ms < 100
        with caplog.at_level(logging.WARNING, logger="storage.stalls"):
            block_the_loop(0.05)
            gc.collect()  # a full collection inside the stall
            block_the_loop(0.15)
            await asyncio.sleep(0.05)
        assert watch.worst_lag_ms >= 150
        [record] = [r for r in caplog.records if "stalled" in r.getMessage()]
        message = record.getMessage()
        assert "test: event loop stalled" in message
        assert "generations [2]" in message
    finally:
        watch.stop()
    assert gc.callbacks.count(watch._on_gc) == 0


async def test_short_waits_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    watch = StallWatch("quiet", interval_s=0.01, warn_ms=100)
    watch.start()
    watch.start()  # idempotent: one watcher, one GC callback
    try:
        assert gc.callbacks.count(watch._on_gc) == 1
        with caplog.at_level(logging.WARNING, logger="storage.stalls"):
            for _ in range(5):
                block_the_loop(0.02)
                await asyncio.sleep(0.01)
        assert not [r for r in caplog.records if "stalled" in r.getMessage()]
        assert 5 <= watch.worst_lag_ms < 100  # measured, under the warning line
    finally:
        watch.stop()
