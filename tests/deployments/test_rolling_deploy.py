"""`nova deploy` while clients are connected: HTTP clients see no error, chat subscribers
are closed with 1012, resume with `afterSeq` and end with every acknowledged message once,
in order.

The redeploy is `deployments.app.deploy`, what `nova deploy` runs: migrations, shards,
relays and consumers replaced, and Serve's rolling update of the gateway, whose stopping
replicas close their WebSockets with 1012 and keep serving HTTP through Serve's draining
period. The figures are printed; the behaviour is asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.typing import Subprotocol

from deployments.rollout import GatewayState, RolloutWatch
from deployments.settings import Settings
from deployments.stack import Stack
from gateway.transport.drain import SERVICE_RESTART
from storage.db import Database
from tests.support.chat import ADDED, SEND, room_of
from tests.support.social import CREATE_POST, LIKE, Member, make_members

HTTP_CLIENTS = 4
# Each client's round (createPost, likePost, me) every 0.5 s: 4 mutations a second, within
# the per-account budget (10/s), so no answer is RATE_LIMITED.
ROUND_S = 0.5
SEND_EVERY_S = 0.2
SUBSCRIBERS = 4
REQUEST_TIMEOUT_S = 30.0
AFTER_ROLLOUT_S = 3.0
CATCH_UP_S = 30.0
MAX_CONNECTS = 50
RECONNECT_PAUSE_S = 0.1  # what a client waits before it reconnects (graphql-ws: 1-4 s)
ME = "query { me { id username } }"


@dataclass
class HttpTally:
    """Every answer the HTTP clients got: successes, and what went wrong otherwise."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    started: float = 0.0  # the deploy's start, which failures are timed from

    def failed(self, started: float, what: str) -> None:
        self.failures.append(f"{what} (at {started - self.started:+.1f} s)")

    async def call(
        self, client: httpx.AsyncClient, name: str, query: str, variables: dict[str, Any]
    ) -> Any:
        started = time.monotonic()
        try:
            reply = await client.post("/graphql", json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            self.failed(started, f"{name}: {type(exc).__name__}: {exc}")
            return None
        self.latencies_ms.append((time.monotonic() - started) * 1000)
        try:
            body = reply.json()
        except ValueError:
            body = {}
        if reply.status_code != 200 or body.get("errors") or not body.get("data"):
            self.failed(started, f"{name}: {reply.status_code} {reply.text[:200]}")
            return None
        self.ok += 1
        return body["data"]


def client_for(http_url: str, member: Member) -> httpx.AsyncClient:
    """A keep-alive client, as a browser holds its connection across requests."""
    return httpx.AsyncClient(
        base_url=http_url,
        timeout=REQUEST_TIMEOUT_S,
        headers={"authorization": f"Bearer {member.token}"},
    )


async def http_client(http_url: str, member: Member, tally: HttpTally, stop: asyncio.Event) -> int:
    """createPost (with an idempotency key), likePost of that post, and `me`, a round every
    ROUND_S until `stop`; how many rounds."""
    rounds = 0
    async with client_for(http_url, member) as client:
        while not stop.is_set() and rounds < 2_000:
            due = time.monotonic() + ROUND_S
            key = uuid.uuid4().hex
            created = await tally.call(
                client, "createPost", CREATE_POST, {"text": f"deploy {key}", "key": key}
            )
            if created is not None:
                await tally.call(client, "likePost", LIKE, {"id": created["createPost"]["id"]})
            await tally.call(client, "me", ME, {})
            rounds += 1
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    return rounds


async def sender(
    http_url: str, member: Member, room: str, tally: HttpTally, stop: asyncio.Event
) -> list[int]:
    """sendMessage every SEND_EVERY_S until `stop`, each retried with its clientMessageId
    until acknowledged; the acknowledged seqs, in order."""
    acknowledged: list[int] = []
    async with client_for(http_url, member) as client:
        while not stop.is_set() and len(acknowledged) < 2_000:
            due = time.monotonic() + SEND_EVERY_S
            cmid, text = uuid.uuid4().hex, f"message {len(acknowledged) + 1}"
            variables = {"room": room, "text": text, "cmid": cmid}
            for _ in range(100):  # a failed send is retried: the same message, once
                sent = await tally.call(client, "sendMessage", SEND, variables)
                if sent is not None:
                    acknowledged.append(sent["sendMessage"]["seq"])
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    return acknowledged


@dataclass
class ChatSubscriber:
    """`messageAdded` over graphql-transport-ws; on a close it reconnects after
    RECONNECT_PAUSE_S and resumes with afterSeq = the last seq it saw, as a client should."""

    url: str
    member: Member
    room: str
    seqs: list[int] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)
    reconnect_s: list[float] = field(default_factory=list)
    failed_attempts: list[str] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        lost_at: float | None = None
        for _ in range(MAX_CONNECTS):
            try:
                async with websockets.connect(
                    self.url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10
                ) as ws:
                    await self._start(ws)
                    if lost_at is not None:
                        self.reconnect_s.append(time.monotonic() - lost_at)
                        lost_at = None
                    self.subscribed.set()
                    await self._receive(ws)
            except websockets.ConnectionClosed as closed:
                self.close_codes.append(closed.rcvd.code if closed.rcvd is not None else 1006)
                lost_at = lost_at or time.monotonic()
                await asyncio.sleep(RECONNECT_PAUSE_S)
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                self.failed_attempts.append(f"{type(exc).__name__}: {exc}")
                lost_at = lost_at or time.monotonic()
                await asyncio.sleep(RECONNECT_PAUSE_S)
        raise AssertionError(f"gave up after {MAX_CONNECTS} connections: {self.close_codes}")

    async def _start(self, ws: Any) -> None:
        init = {"authorization": f"Bearer {self.member.token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        after = self.seqs[-1] if self.seqs else 0
        payload = {"query": ADDED, "variables": {"room": self.room, "after": after}}
        await ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": payload}))

    async def _receive(self, ws: Any) -> None:
        while True:
            message = json.loads(await ws.recv())
            assert message["type"] == "next", message
            self.seqs.append(message["payload"]["data"]["messageAdded"]["seq"])


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def caught_up(subscribers: list[ChatSubscriber], last: int) -> None:
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline:
        if all(s.seqs and s.seqs[-1] >= last for s in subscribers):
            return
        await asyncio.sleep(0.1)


def states(*views: tuple[int, dict[str, str]]) -> Any:
    """A controller that answers these views in turn, then the last one again."""
    answers = [GatewayState(target, replicas) for target, replicas in views]

    def state(_: str) -> GatewayState:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return state


def test_a_rollout_ends_when_the_new_replicas_run_and_the_replaced_ones_are_gone() -> None:
    state = states(
        (2, {"a": "RUNNING", "b": "RUNNING"}),  # read when the watch is made
        (2, {"a": "STOPPING", "b": "RUNNING", "c": "STARTING"}),
        (2, {"a": "STOPPING", "b": "STOPPING", "c": "RUNNING", "d": "RUNNING"}),
        (2, {"b": "STOPPING", "c": "RUNNING", "d": "RUNNING"}),
        (2, {"c": "RUNNING", "d": "RUNNING"}),
    )
    watch = RolloutWatch("nova", poll_s=0.01, state=state)
    assert watch.old == {"a", "b"}
    rollout = watch.start().result(timeout_s=5)
    assert rollout.replaced == 2
    assert 0 < rollout.new_running_s < rollout.old_stopped_s


def test_a_rollout_that_does_not_finish_names_the_replicas_left() -> None:
    state = states((1, {"a": "RUNNING"}), (1, {"a": "STOPPING", "b": "RUNNING"}))
    watch = RolloutWatch("nova", poll_s=0.01, state=state).start()
    with pytest.raises(TimeoutError, match="STOPPING"):
        watch.result(timeout_s=0.2)


@pytest.mark.stack
@pytest.mark.timeout(600)
async def test_a_redeploy_under_load_loses_no_request_and_no_message(
    stack: Stack,
    deployed: Settings,
    db: Database,
    http_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from deployments.app import APP_NAME, deploy

    members = await make_members(db, deployed, HTTP_CLIENTS + SUBSCRIBERS + 1, prefix="rd")
    workers, chat = members[:HTTP_CLIENTS], members[HTTP_CLIENTS:]
    room = await room_of(http_url, chat[0], *chat[1:], name="deploy")
    ws_url = http_url.replace("http://", "ws://") + "/graphql"
    subscribers = [ChatSubscriber(ws_url, m, room) for m in chat[1:]]
    listening = [asyncio.create_task(s.run()) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in subscribers)), 30)

    tally, stop = HttpTally(), asyncio.Event()
    load = [asyncio.create_task(http_client(http_url, m, tally, stop)) for m in workers]
    sending = asyncio.create_task(sender(http_url, chat[0], room, tally, stop))
    try:
        await asyncio.sleep(5)  # the load runs on its own first
        watch = (await asyncio.to_thread(RolloutWatch, APP_NAME)).start()
        tally.started = started = time.monotonic()
        port = stack.layout.http_port
        await asyncio.to_thread(deploy, deployed, http_host="127.0.0.1", http_port=port)
        deploy_s = time.monotonic() - started
        rollout = await asyncio.to_thread(watch.result, 60)
        await asyncio.sleep(AFTER_ROLLOUT_S)
    finally:
        stop.set()
        rounds = sum(await asyncio.gather(*load))
        acknowledged = await sending
    await caught_up(subscribers, acknowledged[-1])
    for task in listening:
        task.cancel()
    ended = await asyncio.gather(*listening, return_exceptions=True)
    crashed = [e for e in ended if not isinstance(e, asyncio.CancelledError)]

    reconnects = [r for s in subscribers for r in s.reconnect_s]
    figures = {
        "deploy_returned_s": round(deploy_s, 1),
        "new_replicas_running_s": round(rollout.new_running_s, 1),
        "old_replicas_stopped_s": round(rollout.old_stopped_s, 1),
        "http_requests": tally.ok + len(tally.failures),
        "http_errors": len(tally.failures),
        "http_rounds": rounds,
        "http_p50_ms": percentile(tally.latencies_ms, 50),
        "http_p99_ms": percentile(tally.latencies_ms, 99),
        "http_max_ms": percentile(tally.latencies_ms, 100),
        "messages_acknowledged": len(acknowledged),
        "close_codes": sorted({c for s in subscribers for c in s.close_codes}),
        "closes": sum(len(s.close_codes) for s in subscribers),
        "reconnects": len(reconnects),
        "reconnect_p50_s": percentile(reconnects, 50),
        "reconnect_max_s": percentile(reconnects, 100),
        "failed_connects": sum(len(s.failed_attempts) for s in subscribers),
        "messages_missed": sum(len(set(acknowledged) - set(s.seqs)) for s in subscribers),
        "duplicates": sum(len(s.seqs) - len(set(s.seqs)) for s in subscribers),
    }
    with capsys.disabled():
        print(f"\nrolling deploy under load: {json.dumps(figures)}")
        for failure in tally.failures[:40]:
            print(f"  {failure[:100]} … {failure[-16:]}")
        for s in subscribers:
            if s.failed_attempts:
                print(f"  {s.member.username} failed connects: {s.failed_attempts[:3]}")

    assert crashed == [], crashed
    assert tally.failures == [], tally.failures[:10]
    assert acknowledged == list(range(1, len(acknowledged) + 1))
    for s in subscribers:
        # Every subscriber was on a replaced replica, and was told to reconnect.
        assert set(s.close_codes) == {SERVICE_RESTART}, s.close_codes
        assert s.failed_attempts == [], s.failed_attempts[:3]  # never a refused handshake
        assert s.seqs == acknowledged, (s.member.username, s.seqs[-5:], acknowledged[-5:])
