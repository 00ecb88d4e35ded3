"""Backoff bounds and supervised loops that restart instead of dying silently."""

from __future__ import annotations

import asyncio

import pytest

from storage.tasks import Backoff, LoopHealth, supervise


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(base_ms=100, cap_ms=1000)
    delays = [backoff.next_delay_s() for _ in range(10)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(0.5 <= d <= 1.0 for d in delays[5:])
    backoff.reset()
    assert backoff.next_delay_s() <= 0.1


async def test_a_crashing_loop_is_restarted_and_its_crashes_counted() -> None:
    health = LoopHealth()
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"crash {runs}")

    task = supervise("test-loop", body, health, max_backoff_ms=10)
    await asyncio.wait_for(task, 5)
    assert runs == 3
    assert health.crashes == 2
    assert health.last_error == "RuntimeError: crash 2"


async def test_cancellation_stops_a_supervised_loop() -> None:
    async def body() -> None:
        await asyncio.sleep(3600)

    task = supervise("test-loop", body, LoopHealth())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
