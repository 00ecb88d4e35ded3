"""Rolling deploy benchmark: the same client load without and with a `nova deploy`, in one run.

    cd /work/main && .venv/bin/python -m bench.rolling_deploy [--clients 8 --subscribers 20]

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md). The load:

* `--clients` HTTP clients, each its own account on one keep-alive connection, each doing
  a round every `--round-s`: `createPost` (with an idempotency key), `likePost` of that
  post, and `me`;
* one chat room: `--subscribers` members subscribed to `messageAdded` over
  graphql-transport-ws, and one more member sending a message every `--send-every-s`
  over HTTP, each retried with its `clientMessageId` until acknowledged. A subscriber
  that is closed reconnects at once and resumes with `afterSeq` = the last seq it saw.

Baseline: the load for `--baseline-s` with nothing else going on. Then the same load while
`nova deploy` runs (a subprocess, as an operator runs it, with the stack's environment and
`bench/bench.env`; it returns once the replaced gateway replicas have stopped), and 3 s
more. For each window: HTTP requests, failures (any answer but a 200 without errors, or
no answer) by kind, p50/p99 latency; chat delivery latency (send → receipt). Over the
whole run: messages acknowledged, missed and duplicated per subscriber, close codes,
reconnect time. Ratios: the deploy window over the baseline. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import websockets
from websockets.typing import Subprotocol

from bench.goals import Goal
from bench.harness import ratio, run_on_ray, summarize

SCENARIO = "rolling_deploy"
BENCH_ENV = os.path.join(os.path.dirname(__file__), "bench.env")
CREATE_POST = """
mutation($t: String!, $k: String) { createPost(input: {text: $t, idempotencyKey: $k}) { id } }
"""
LIKE = "mutation($id: ID!) { likePost(postId: $id) { id } }"
ME = "query { me { id } }"
SEND = """
mutation($room: ID!, $text: String!, $cmid: String!) {
  sendMessage(input: {roomId: $room, text: $text, clientMessageId: $cmid}) { seq }
}
"""
ADDED = "subscription($room: ID!, $after: Int) { messageAdded(roomId: $room, afterSeq: $after) { seq } }"  # noqa: E501
AFTER_DEPLOY_S = 3.0
DEPLOY_TIMEOUT_S = 300.0
CATCH_UP_S = 30.0
MAX_CONNECTS = 50


class Args:
    clients = 8
    round_s = 0.5
    subscribers = 20
    send_every_s = 0.2
    baseline_s = 45.0


@dataclass
class Calls:
    """Every HTTP call: (start, latency ms or None, failure or "")."""

    done: list[tuple[float, float | None, str]] = field(default_factory=list)

    async def call(
        self, http: aiohttp.ClientSession, name: str, query: str, variables: dict[str, Any]
    ) -> Any:
        started = time.monotonic()
        try:
            async with http.post("/graphql", json={"query": query, "variables": variables}) as r:
                body = await r.json(content_type=None)
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.done.append((started, None, f"{name}: {type(exc).__name__}"))
            return None
        latency = (time.monotonic() - started) * 1000
        if status != 200 or not isinstance(body, dict) or body.get("errors"):
            codes = [
                (e.get("extensions") or {}).get("code") for e in (body or {}).get("errors", [])
            ]
            self.done.append((started, latency, f"{name}: {status} {codes}"))
            return None
        self.done.append((started, latency, ""))
        return body["data"]

    def window(self, start: float, end: float) -> dict[str, Any]:
        inside = [c for c in self.done if start <= c[0] < end]
        failures = collections.Counter(f for _, _, f in inside if f)
        return {
            "requests": len(inside),
            "failures": sum(failures.values()),
            "failure_rate": ratio(sum(failures.values()), len(inside)),
            "failures_by_kind": dict(failures),
            "latency_ms": summarize([lat for _, lat, f in inside if lat is not None and not f]),
        }


def session(base_url: str, token: str) -> aiohttp.ClientSession:
    """One keep-alive connection, as a browser tab holds one."""
    return aiohttp.ClientSession(
        base_url=base_url,
        headers={"authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def http_client(base_url: str, token: str, calls: Calls, stop: asyncio.Event) -> None:
    async with session(base_url, token) as http:
        for _ in range(10_000):
            if stop.is_set():
                return
            due = time.monotonic() + Args.round_s
            key = uuid.uuid4().hex
            created = await calls.call(http, "createPost", CREATE_POST, {"t": key, "k": key})
            if created is not None:
                await calls.call(http, "likePost", LIKE, {"id": created["createPost"]["id"]})
            await calls.call(http, "me", ME, {})
            await asyncio.sleep(max(0.0, due - time.monotonic()))


async def sender(
    base_url: str, token: str, room: str, calls: Calls, stop: asyncio.Event
) -> dict[int, float]:
    """seq → when its send started, for every acknowledged message."""
    sent: dict[int, float] = {}
    async with session(base_url, token) as http:
        for index in range(10_000):
            if stop.is_set():
                break
            due, started = time.monotonic() + Args.send_every_s, time.monotonic()
            variables = {"room": room, "text": f"m{index}", "cmid": uuid.uuid4().hex}
            for _ in range(100):  # the same message until acknowledged
                answer = await calls.call(http, "sendMessage", SEND, variables)
                if answer is not None:
                    sent[answer["sendMessage"]["seq"]] = started
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    return sent


@dataclass
class Subscriber:
    url: str
    token: str
    room: str
    received: list[tuple[int, float]] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)
    reconnect_s: list[float] = field(default_factory=list)
    failed_connects: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        lost_at: float | None = None
        for _ in range(MAX_CONNECTS):
            try:
                async with websockets.connect(
                    self.url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10
                ) as ws:
                    init = {"authorization": f"Bearer {self.token}"}
                    await ws.send(json.dumps({"type": "connection_init", "payload": init}))
                    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if ack.get("type") != "connection_ack":
                        raise RuntimeError(f"not acknowledged: {ack}")
                    if lost_at is not None:
                        self.reconnect_s.append(time.monotonic() - lost_at)
                        lost_at = None
                    after = self.received[-1][0] if self.received else 0
                    variables = {"room": self.room, "after": after}
                    payload = {"query": ADDED, "variables": variables}
                    await ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": payload}))
                    self.ready.set()
                    while True:
                        message = json.loads(await ws.recv())
                        if message.get("type") != "next":
                            raise RuntimeError(f"subscription ended: {message}")
                        seq = message["payload"]["data"]["messageAdded"]["seq"]
                        self.received.append((seq, time.monotonic()))
            except websockets.ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd is not None else 1006)
                lost_at = lost_at or time.monotonic()
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                self.failed_connects += 1
                lost_at = lost_at or time.monotonic()
                await asyncio.sleep(0.1)


async def seed(clients: int, subscribers: int) -> tuple[list[str], str, list[str]]:
    """Tokens for the HTTP clients; a room, and its members' tokens (the sender first)."""
    from bench.chat import seed as seed_rooms
    from bench.seed import insert_users, issue_tokens
    from deployments.settings import Settings
    from storage.db import Database

    settings = Settings.from_env()
    db = await Database.connect(settings, application_name="bench-rolling-deploy")
    try:
        tokens = await issue_tokens(db, settings, await insert_users(db, clients))
    finally:
        await db.close()
    ((room, members),) = await seed_rooms(1, subscribers + 1)
    return tokens, room, members


def deploy_environment() -> dict[str, str]:
    """The stack's environment (loaded by the harness) with bench/bench.env's settings, so
    the new version runs with the limits the stack was started with."""
    env = dict(os.environ)
    with open(BENCH_ENV) as lines:
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                env.setdefault(key, value)
    return env


async def nova_deploy() -> dict[str, Any]:
    from deployments.stack.processes import venv_bin

    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        venv_bin("nova"),
        "deploy",
        env=deploy_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), DEPLOY_TIMEOUT_S)
    return {
        "exit_code": process.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "output": [line for line in output.decode().splitlines() if line.strip()][-8:],
    }


async def caught_up(subscribers: list[Subscriber], last: int) -> None:
    """Until every subscriber has seen `last`, for at most CATCH_UP_S."""
    deadline = time.monotonic() + CATCH_UP_S
    for _ in range(int(CATCH_UP_S / 0.2) + 1):
        if time.monotonic() >= deadline:
            return
        if all(s.received and s.received[-1][0] >= last for s in subscribers):
            return
        await asyncio.sleep(0.2)


def delivery_ms(
    subscribers: list[Subscriber], sent: dict[int, float], start: float, end: float
) -> Any:
    return summarize(
        [
            (at - sent[seq]) * 1000
            for s in subscribers
            for seq, at in s.received
            if seq in sent and start <= sent[seq] < end
        ]
    )


def chat_figures(subscribers: list[Subscriber], sent: dict[int, float]) -> dict[str, Any]:
    acknowledged = sorted(sent)
    reconnects = [r * 1000 for s in subscribers for r in s.reconnect_s]
    return {
        "subscribers": len(subscribers),
        "acknowledged": len(acknowledged),
        "acknowledged_contiguous": acknowledged == list(range(1, len(acknowledged) + 1)),
        "missed": sum(len(set(acknowledged) - {q for q, _ in s.received}) for s in subscribers),
        "duplicates": sum(len(s.received) - len({q for q, _ in s.received}) for s in subscribers),
        "out_of_order": sum(
            sum(1 for a, b in zip(s.received, s.received[1:], strict=False) if b[0] <= a[0])
            for s in subscribers
        ),
        "closes": dict(collections.Counter(str(c) for s in subscribers for c in s.closes)),
        "failed_connects": sum(s.failed_connects for s in subscribers),
        "reconnect_ms": summarize(reconnects),
    }


def rolling_deploy_goals(
    baseline: dict[str, Any], during: dict[str, Any], chat: dict[str, Any]
) -> list[Goal]:
    """The deploy window over the same load without a deploy: HTTP p99 (every request
    answered, the deploy succeeded) and chat delivery p99 (no message missed, none twice)."""
    http, deployed = during["http"], during["nova_deploy"]
    answered = http["failures"] == 0 and deployed["exit_code"] == 0
    whole = chat["missed"] == 0 and chat["duplicates"] == 0 and chat["out_of_order"] == 0
    return [
        Goal(
            "HTTP p99 during nova deploy",
            http["latency_ms"]["p99"],
            baseline["http"]["latency_ms"]["p99"],
            "ms",
            "same load, no deploy, p99",
            also=answered,
            note=(
                f"{http['failures']} of {http['requests']} requests failed,"
                f" deploy exit {deployed['exit_code']} after {deployed['seconds']:g} s"
            ),
        ),
        Goal(
            "chat delivery p99 during nova deploy",
            during["chat_delivery_ms"]["p99"],
            baseline["chat_delivery_ms"]["p99"],
            "ms",
            "same load, no deploy, p99",
            also=whole,
            note=(
                f"{chat['missed']} missed, {chat['duplicates']} twice,"
                f" {chat['out_of_order']} out of order"
            ),
        ),
    ]


async def run(base_url: str) -> dict[str, Any]:
    tokens, room, members = await seed(Args.clients, Args.subscribers)
    ws_url = base_url.replace("http://", "ws://") + "/graphql"
    subscribers = [Subscriber(ws_url, token, room) for token in members[1:]]
    listening = [asyncio.create_task(s.run()) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subscribers)), 60)
    calls, stop = Calls(), asyncio.Event()
    load = [asyncio.create_task(http_client(base_url, t, calls, stop)) for t in tokens]
    sending = asyncio.create_task(sender(base_url, members[0], room, calls, stop))
    try:
        await asyncio.sleep(3)  # warm: every client past its first requests
        baseline_start = time.monotonic()
        await asyncio.sleep(Args.baseline_s)
        deploy_start = time.monotonic()
        deployed = await nova_deploy()
        await asyncio.sleep(AFTER_DEPLOY_S)
        deploy_end = time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*load)
        sent = await sending
    await caught_up(subscribers, max(sent, default=0))
    for task in listening:
        task.cancel()
    await asyncio.gather(*listening, return_exceptions=True)

    baseline = {
        "window_s": round(deploy_start - baseline_start, 1),
        "http": calls.window(baseline_start, deploy_start),
        "chat_delivery_ms": delivery_ms(subscribers, sent, baseline_start, deploy_start),
    }
    during = {
        "window_s": round(deploy_end - deploy_start, 1),
        "nova_deploy": deployed,
        "http": calls.window(deploy_start, deploy_end),
        "chat_delivery_ms": delivery_ms(subscribers, sent, deploy_start, deploy_end),
    }
    base_http, deploy_http = baseline["http"], during["http"]
    chat = chat_figures(subscribers, sent)
    return {
        "load": {
            "http_clients": Args.clients,
            "round_s": Args.round_s,
            "subscribers": Args.subscribers,
            "send_every_s": Args.send_every_s,
        },
        "baseline": baseline,
        "deploy": during,
        "chat": chat,
        "ratios": {
            "failure_rate_deploy_over_baseline": ratio(
                deploy_http["failure_rate"], base_http["failure_rate"]
            ),
            "http_p50_deploy_over_baseline": ratio(
                deploy_http["latency_ms"]["p50"], base_http["latency_ms"]["p50"]
            ),
            "http_p99_deploy_over_baseline": ratio(
                deploy_http["latency_ms"]["p99"], base_http["latency_ms"]["p99"]
            ),
            "chat_delivery_p99_deploy_over_baseline": ratio(
                during["chat_delivery_ms"]["p99"], baseline["chat_delivery_ms"]["p99"]
            ),
        },
        "goals": [g.to_dict() for g in rolling_deploy_goals(baseline, during, chat)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=Args.clients)
    parser.add_argument("--round-s", type=float, default=Args.round_s)
    parser.add_argument("--subscribers", type=int, default=Args.subscribers)
    parser.add_argument("--send-every-s", type=float, default=Args.send_every_s)
    parser.add_argument("--baseline-s", type=float, default=Args.baseline_s)
    parsed = parser.parse_args(argv)
    if min(parsed.clients, parsed.subscribers) < 1 or parsed.baseline_s <= 0:
        parser.error("--clients and --subscribers must be >= 1, --baseline-s > 0")
    Args.clients, Args.round_s = parsed.clients, parsed.round_s
    Args.subscribers, Args.send_every_s = parsed.subscribers, parsed.send_every_s
    Args.baseline_s = parsed.baseline_s
    return run_on_ray(SCENARIO, run)


if __name__ == "__main__":
    sys.exit(main())
