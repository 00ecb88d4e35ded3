"""Reading Nova's metrics as an operator's Prometheus would: from Ray's metrics endpoint on
the test cluster, polled until Ray's next export."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import httpx

from deployments.stack import Stack

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Every sample of `name` whose labels include `labels` (all replicas).

    Ray exports application metrics with a `ray_` prefix."""
    values = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        found = dict(_LABEL.findall(match["labels"]))
        if all(found.get(key) == value for key, value in labels.items()):
            values.append(float(match["value"]))
    return values


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels` (all replicas)."""
    return sum(samples(text, name, **labels))


async def scrape(stack: Stack) -> str:
    port = stack.layout.ray_ports()["metrics-export-port"]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return response.text


METRIC_WAIT_S = 60  # Ray exports a process's metrics every few seconds


async def metric_reaches(
    stack: Stack, name: str, predicate: Callable[[float], bool], **labels: str
) -> float:
    """Poll the endpoint until `predicate(value)` holds; Ray exports every few seconds."""
    deadline = time.monotonic() + METRIC_WAIT_S
    value = 0.0
    while time.monotonic() < deadline:
        value = metric_sum(await scrape(stack), name, **labels)
        if predicate(value):
            return value
        await asyncio.sleep(1)
    raise AssertionError(f"{name}{labels} stayed at {value}")
