"""Helpers shared by the benchmark scenarios.

Load the dev stack's environment before importing Ray (`load_stack_env`), summarize
latencies (`summarize`), pace operations at a target rate (`run_paced`) and print the one
JSON document a scenario reports (`report`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from deployments.stack import dev_layout, port_open, read_env_file

REQUIRED_VARIABLES = ("NOVA_DATABASE_URL", "NOVA_KAFKA_BOOTSTRAP", "RAY_ADDRESS")


class StackNotUp(RuntimeError):
    """The dev stack is not running (or its env file is missing)."""


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"//{address}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


def load_stack_env() -> dict[str, str]:
    """Load the dev stack's env file into `os.environ` (set variables win) and check it is up.

    Must run before `ray` is imported. Raises `StackNotUp`, naming `nova up`, otherwise.
    """
    env_file = dev_layout().env_file
    values = read_env_file(env_file)
    if not values:
        raise StackNotUp(
            f"no dev stack environment at {env_file}: start the stack first with `nova up` "
            "(or .venv/bin/nova up)"
        )
    for key, value in values.items():
        os.environ.setdefault(key, value)
    missing = [k for k in REQUIRED_VARIABLES if not os.environ.get(k)]
    if missing:
        raise StackNotUp(f"{env_file} lacks {', '.join(missing)}: run `nova up` again")
    endpoints = {
        "PostgreSQL": _host_port(os.environ["NOVA_DATABASE_URL"], 5432),
        "Kafka": _host_port(os.environ["NOVA_KAFKA_BOOTSTRAP"].split(",")[0], 9092),
        "Ray": _host_port(os.environ["RAY_ADDRESS"], 6379),
    }
    down = [
        f"{part} ({host}:{port})"
        for part, (host, port) in endpoints.items()
        if not port_open(port, host)
    ]
    if down:
        raise StackNotUp(f"{', '.join(down)} not reachable: start the stack first with `nova up`")
    return {key: os.environ[key] for key in values}


async def graphql(
    http: Any,
    base_url: str,
    token: str | None,
    query: str,
    variables: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """POST one operation with a bearer token, or anonymously when `token` is None (an
    `httpx.AsyncClient`; `base_url` may be "" when the client has one); its `data`, or
    `RuntimeError` on an HTTP error or a GraphQL error."""
    reply = await http.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": dict(variables or {})},
        headers={"authorization": f"Bearer {token}"} if token is not None else {},
    )
    body = reply.json()
    if reply.status_code != 200 or "errors" in body:
        raise RuntimeError(f"{reply.status_code}: {reply.text[:200]}")
    data: dict[str, Any] = body["data"]
    return data


def summarize(latencies_ms: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p99 and max of latencies in milliseconds (None when empty)."""
    if not latencies_ms:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": int(values.size),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "max": round(float(values.max()), 3),
        "mean": round(float(values.mean()), 3),
    }


def ratio(numerator: float | int | None, denominator: float | int | None) -> float | None:
    """numerator / denominator, rounded; None when either is missing or the divisor is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    value = float(numerator) / float(denominator)
    return round(value, 3) if math.isfinite(value) else None


def quantile_ratios(
    numerator: Mapping[str, Any], denominator: Mapping[str, Any], key: str
) -> dict[str, float | None]:
    """p50 and p99 of one `summarize` over another's, named `key` with the percentile filled in."""
    return {key.format(q): ratio(numerator[q], denominator[q]) for q in ("p50", "p99")}


def latency_ratios(
    numerator: Mapping[str, Any], denominator: Mapping[str, Any], key: str
) -> dict[str, float | None]:
    """`quantile_ratios` of two runs' `latency_ms`."""
    return quantile_ratios(numerator["latency_ms"], denominator["latency_ms"], key)


def report(name: str, results: Mapping[str, Any]) -> dict[str, Any]:
    """Print one JSON document (indent 2) to stdout: the scenario name, then `results`.

    `results` must carry a `ratios` section (this scenario against its baseline).
    """
    if "ratios" not in results:
        raise ValueError("a benchmark report needs a 'ratios' section")
    document = {"scenario": name, **results}
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()
    return document


@dataclass
class PacedResult:
    """What `run_paced` did: how many ran, failed or were skipped by the deadline."""

    requested: int
    completed: int = 0
    failed: int = 0
    not_started: int = 0
    elapsed_s: float = 0.0
    max_behind_ms: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def achieved_per_s(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @classmethod
    def combined(cls, results: Sequence[PacedResult]) -> PacedResult:
        """Several runs' counts as one run (elapsed times add up)."""
        return cls(
            requested=sum(r.requested for r in results),
            completed=sum(r.completed for r in results),
            failed=sum(r.failed for r in results),
            not_started=sum(r.not_started for r in results),
            elapsed_s=sum(r.elapsed_s for r in results),
            max_behind_ms=max((r.max_behind_ms for r in results), default=0.0),
            errors=[e for r in results for e in r.errors],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "completed": self.completed,
            "failed": self.failed,
            "not_started": self.not_started,
            "elapsed_s": round(self.elapsed_s, 3),
            "achieved_per_s": round(self.achieved_per_s, 1),
            "max_behind_schedule_ms": round(self.max_behind_ms, 3),
            "errors": self.errors[:5],
        }


async def run_paced(
    operation: Callable[[int], Awaitable[None]],
    *,
    count: int,
    rate_per_s: float | None,
    concurrency: int,
    deadline_s: float,
) -> PacedResult:
    """Run `operation(0) .. operation(count - 1)` at `rate_per_s` (None: as fast as possible).

    Operation i is due at start + i / rate; `concurrency` workers take the next index, wait
    until it is due and run it, so a slow operation delays others only when all workers are
    busy (`max_behind_schedule_ms` shows it). Nothing new starts after `deadline_s` seconds;
    running operations get one more `deadline_s`/10 (at least 5 s) before they are cancelled.
    Failures are counted, not raised.
    """
    if count < 0 or concurrency < 1 or deadline_s <= 0:
        raise ValueError("count >= 0, concurrency >= 1 and deadline_s > 0 are required")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError("rate_per_s must be > 0 (or None for as fast as possible)")
    result = PacedResult(requested=count)
    start = time.monotonic()
    stop_at = start + deadline_s
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            if rate_per_s is not None:
                due = start + index / rate_per_s
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    result.max_behind_ms = max(result.max_behind_ms, -delay * 1000)
            if time.monotonic() >= stop_at:
                result.not_started += 1
                continue
            try:
                await operation(index)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a benchmark counts failures and goes on
                result.failed += 1
                if len(result.errors) < 20:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                result.completed += 1

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, max(count, 1)))]
    grace_s = max(5.0, deadline_s / 10)
    done, pending = await asyncio.wait(workers, timeout=deadline_s + grace_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()
    result.not_started += count - next_index
    result.elapsed_s = time.monotonic() - start
    return result


def run_on_ray(
    scenario: str,
    run: Callable[[str], Coroutine[Any, Any, Mapping[str, Any]]],
    *,
    cleanup: Callable[[], None] | None = None,
) -> int:
    """Connect to the dev stack's Ray cluster, run `run(base_url)`, report its results.

    Returns the process exit code: 2 (with the reason on stderr) when the stack is not up.
    `cleanup` runs while still connected, whatever happened (deleting a bench app, say).
    """
    try:
        env = load_stack_env()
    except StackNotUp as exc:
        print(f"bench.{scenario}: {exc}", file=sys.stderr)
        return 2
    import ray  # only now: Ray reads RAY_* from the environment on import

    ray.init(address=env["RAY_ADDRESS"], namespace="nova", log_to_driver=False)
    base_url = env.get("NOVA_PUBLIC_URL", "http://127.0.0.1:8000")
    try:
        results: Mapping[str, Any] = asyncio.run(run(base_url))
    finally:
        if cleanup is not None:
            cleanup()
        ray.shutdown()
    report(scenario, results)
    return 0
