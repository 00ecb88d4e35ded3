"""Background loops that never die silently, bounded exponential backoff, and loads that
concurrent callers share."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Backoff:
    """Exponential backoff with full jitter: 0..min(cap, base * 2**n)."""

    base_ms: int = 100
    cap_ms: int = 5_000
    attempts: int = field(default=0, init=False)

    def next_delay_s(self) -> float:
        ceiling = min(self.cap_ms, self.base_ms * 2 ** min(self.attempts, 20))
        self.attempts += 1
        return random.uniform(ceiling / 2, ceiling) / 1000

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay_s())


@dataclass
class LoopHealth:
    """What a supervised loop reports: restarts and the last crash, for status and metrics."""

    crashes: int = 0
    last_error: str | None = None


def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    health: LoopHealth,
    *,
    max_backoff_ms: int = 5_000,
) -> asyncio.Task[None]:
    """Run `body` forever: a crash is logged, counted and restarted after a backoff.

    Cancellation stops it (and is never swallowed). `body` returning normally ends it.
    """

    async def runner() -> None:
        backoff = Backoff(cap_ms=max_backoff_ms)
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                health.crashes += 1
                health.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s crashed (%d so far); restarting", name, health.crashes)
                await backoff.sleep()

    return asyncio.get_running_loop().create_task(runner(), name=name)


class SingleFlight(Generic[T]):
    """One run of `load` at a time: callers that arrive while it runs await the same result,
    so a refresh that many requests find due at once costs one query, not one each. A
    caller that is cancelled does not cancel the load for the others."""

    def __init__(self, load: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._load = load
        self._task: asyncio.Task[T] | None = None

    async def __call__(self) -> T:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._load())
        return await asyncio.shield(self._task)
