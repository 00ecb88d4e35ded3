"""Background loops that never die silently, and bounded exponential backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


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
