"""Serve's autoscaling seen from outside: a burst of concurrent ranked-feed reads through
the HTTP API, the Serve deployments' running replicas sampled every second
(`serve.status()`) through the burst and the calm after it."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from ray import serve

from deployments.app import APP_NAME, RANKING_APP
from tests.support.social import Member

FEED = "query { feed(first: 20, mode: RANKED) { edges { node { id } } } }"
WATCHED = {"Gateway": APP_NAME, "FeatureStore": RANKING_APP, "Ranker": RANKING_APP}
CLIENTS = 32  # in flight at the gateway: 4x the scenario's target of 8 a replica
CALM_BEFORE_S = 3.0
BURST_MAX_S = 120.0  # the burst ends this long after it began, at the latest
HOLD_AT_MAX_S = 15.0  # and no later than this after the gateway reached its most replicas
SCALE_DOWN_TIMEOUT_S = 180.0
SAMPLE_EVERY_S = 1.0
REQUEST_TIMEOUT_S = 30.0


def running_replicas() -> dict[str, int]:
    """RUNNING replicas of each watched deployment, as Serve's controller reports them."""
    status = serve.status()
    counts = {}
    for deployment, app in WATCHED.items():
        application = status.applications.get(app)
        overview = application.deployments.get(deployment) if application else None
        states = overview.replica_states if overview else {}
        running = [n for s, n in states.items() if getattr(s, "value", s) == "RUNNING"]
        counts[deployment] = sum(running)
    return counts


@dataclass
class Samples:
    """(seconds since the start, running replicas by deployment), one a second."""

    started: float = field(default_factory=time.monotonic)
    rows: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def now(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def latest(self, deployment: str) -> int:
        return self.rows[-1][1][deployment] if self.rows else 0

    def changes(self) -> list[dict[str, Any]]:
        """The samples where a count changed (and the first): replica counts over time."""
        shown: list[dict[str, Any]] = []
        previous: dict[str, int] | None = None
        for at, counts in self.rows:
            if counts != previous:
                shown.append({"t_s": at, **counts})
                previous = counts
        return shown

    def first_at_least(self, deployment: str, count: int, after: float) -> float | None:
        return next((t for t, c in self.rows if t >= after and c[deployment] >= count), None)

    def first_at_most(self, deployment: str, count: int, after: float) -> float | None:
        return next((t for t, c in self.rows if t >= after and c[deployment] <= count), None)


async def _sample(samples: Samples, stop: asyncio.Event) -> None:
    while not stop.is_set():
        counts = await asyncio.to_thread(running_replicas)
        samples.rows.append((samples.now(), counts))
        await asyncio.sleep(SAMPLE_EVERY_S)


@dataclass
class Answers:
    ok: list[float] = field(default_factory=list)  # when each answered, since the start
    failed: int = 0


async def _client(
    http: httpx.AsyncClient, url: str, member: Member, samples: Samples, answers: Answers
) -> None:
    """One client reading its ranked feed again and again, until cancelled."""
    headers = {"authorization": f"Bearer {member.token}"}
    while True:
        try:
            response = await http.post(url, json={"query": FEED}, headers=headers)
            good = response.status_code == 200 and not response.json().get("errors")
        except (httpx.HTTPError, ValueError):
            good = False
        if good:
            answers.ok.append(samples.now())
        else:
            answers.failed += 1
            await asyncio.sleep(0.1)


async def _burst(
    http_url: str, members: list[Member], most: int, samples: Samples, answers: Answers
) -> tuple[float, float]:
    """`CLIENTS` clients until the gateway has run `most` replicas for `HOLD_AT_MAX_S`, or
    for `BURST_MAX_S`; when it began and ended."""
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        began = samples.now()
        url = f"{http_url}/graphql"
        clients = [
            asyncio.create_task(_client(http, url, members[n % len(members)], samples, answers))
            for n in range(CLIENTS)
        ]
        try:
            at_most = None
            while samples.now() - began < BURST_MAX_S:
                if at_most is None and samples.latest("Gateway") >= most:
                    at_most = samples.now()
                if at_most is not None and samples.now() - at_most >= HOLD_AT_MAX_S:
                    break
                await asyncio.sleep(0.5)
        finally:
            for client in clients:
                client.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
        return began, samples.now()


async def _until_settled(samples: Samples, since: float) -> None:
    """Until every watched deployment runs one replica again, or `SCALE_DOWN_TIMEOUT_S`."""
    while samples.now() - since < SCALE_DOWN_TIMEOUT_S:
        if all(samples.latest(d) <= 1 for d in WATCHED):
            return
        await asyncio.sleep(1.0)


async def burst_and_calm(http_url: str, members: list[Member], most: int) -> dict[str, Any]:
    """A burst until the gateway runs `most` replicas (held a while), then the calm until
    every deployment is back to one; replica counts sampled throughout."""
    samples, answers = Samples(), Answers()
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(_sample(samples, stop_sampling))
    try:
        await asyncio.sleep(CALM_BEFORE_S)
        began, ended = await _burst(http_url, members, most, samples, answers)
        await _until_settled(samples, ended)
    finally:
        stop_sampling.set()
        await sampler
    return _report(samples, answers, began, ended, most)


def _report(
    samples: Samples, answers: Answers, began: float, ended: float, most: int
) -> dict[str, Any]:
    scaled_up = samples.first_at_least("Gateway", most, began)
    more_than_one = samples.first_at_least("Gateway", 2, began)
    return {
        "clients": CLIENTS,
        "burst_s": round(ended - began, 1),
        "gateway_peak": max((c["Gateway"] for _, c in samples.rows), default=0),
        "peaks": {d: max((c[d] for _, c in samples.rows), default=0) for d in WATCHED},
        "gateway_scaled_up_after_s": _since(scaled_up, began),
        "gateway_scaled_down_after_s": _since(samples.first_at_most("Gateway", 1, ended), ended),
        "settled_at_one": all(samples.latest(d) <= 1 for d in WATCHED),
        "answered": len(answers.ok),
        "failed": answers.failed,
        # Feed reads a second through one gateway replica, and through the most.
        "reads_per_s_one_replica": _rate(answers, began, more_than_one or ended),
        "reads_per_s_most_replicas": None
        if scaled_up is None
        else _rate(answers, scaled_up, ended),
        "replicas_over_time": samples.changes(),
        "burst_window_s": [began, ended],
    }


def _since(moment: float | None, start: float) -> float | None:
    return None if moment is None else round(moment - start, 1)


def _rate(answers: Answers, start: float | None, end: float) -> float | None:
    """Answers a second between two moments (None for a window under 3 s)."""
    if start is None or end - start < 3:
        return None
    return round(sum(1 for t in answers.ok if start <= t < end) / (end - start), 1)


_DECISION = re.compile(
    r"(?P<at>\d\d:\d\d:\d\d),\d+ controller .*(?P<verb>Upscaling|Downscaling) "
    r"Deployment\(name='(?P<name>\w+)'.* from (?P<old>\d+) to (?P<new>\d+) replicas\. "
    r"Current ongoing requests: (?P<ongoing>[\d.]+)"
)


def controller_decisions(ray_temp_dir: Path) -> list[str]:
    """Serve's autoscaling decisions, from its controller's log: when, which deployment,
    from how many to how many, and the requests in flight it saw."""
    logs = ray_temp_dir / "ray" / "session_latest" / "logs" / "serve"
    decisions = []
    for log in sorted(logs.glob("controller_*.log")):
        for match in _DECISION.finditer(log.read_text(errors="replace")):
            decisions.append(
                f"{match['at']} {match['name']} {match['old']}->{match['new']}"
                f" (in flight {match['ongoing']})"
            )
    return decisions
