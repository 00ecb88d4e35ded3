"""Chat benchmark: many WebSocket subscribers, messages sent at a fixed rate, in one run.

    cd /work/main && .venv/bin/python -m bench.chat [--rooms 100 --per-room 20 --rate 200]

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md). Nova: every
subscriber is a member with its own graphql-transport-ws connection through Serve's proxy,
subscribed to `messageAdded` of its room; messages go through `sendMessage` at `--rate`
per second in total, spread over the rooms: by default over WebSocket (one more
graphql-transport-ws connection per room, signed in as one of its members, as a chat client
sends through the socket it holds), or over HTTP with `--send-over http`. Latency is send
start → receipt at each subscriber. Two baselines, same run, same counts and rate: a plain
`websockets` broadcast server in this process (no auth, no persistence, no ordering work),
the floor of the machine; and the same broadcast as a bare Serve deployment behind Serve's
proxy (`bench-chat-bare`, deleted at the end), the floor of Serve's WebSocket path that
Nova's gateway stands on. `--floors-only` measures the two baselines alone.

Checks: delivered / expected, every subscriber's seqs strictly increasing with no gap
(Nova), and the most connections held at once. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import websockets

from bench.goals import Goal
from bench.harness import graphql, latency_ratios, ratio, run_on_ray, run_paced, summarize

SCENARIO = "chat"
SERVE_BROADCAST_APP = "bench-chat-bare"
SERVE_BROADCAST_ROUTE = "/bench-chat-bare"
SEND = """
mutation($room: ID!, $text: String!, $cmid: String!) {
  sendMessage(input: {roomId: $room, text: $text, clientMessageId: $cmid}) { seq }
}
"""
SUBSCRIBE = "subscription($room: ID!) { messageAdded(roomId: $room) { seq } }"
CONNECT_CONCURRENCY = 50
DRAIN_S = 30.0


class Args:
    rooms = 100
    per_room = 20
    rate = 200.0
    messages = 2_000
    send_over = "websocket"
    floors_only = False


class SocketSender:
    """`sendMessage` over one graphql-transport-ws connection: operations run concurrently
    on it, each answered by id."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        self._ids = 0

    @classmethod
    async def open(cls, url: str, token: str) -> SocketSender:
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"not acknowledged: {ack}")
        return cls(ws)

    async def send(self, room: str, text: str, cmid: str) -> int:
        self._ids += 1
        key = str(self._ids)
        answer = self._waiting[key] = asyncio.get_running_loop().create_future()
        variables = {"room": room, "text": text, "cmid": cmid}
        message = {
            "id": key,
            "type": "subscribe",
            "payload": {"query": SEND, "variables": variables},
        }
        await self._ws.send(json.dumps(message))
        payload = await asyncio.wait_for(answer, 30)
        if payload.get("errors"):
            raise RuntimeError(str(payload["errors"])[:200])
        return int(payload["data"]["sendMessage"]["seq"])

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            waiting = self._waiting.pop(message.get("id", ""), None)
            if waiting is None or waiting.done():
                continue
            if message["type"] == "next":
                waiting.set_result(message["payload"])
            elif message["type"] == "error":
                waiting.set_result({"errors": message["payload"]})

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()


async def seed(rooms: int, per_room: int) -> list[tuple[str, list[str]]]:
    """Rooms with members inserted by SQL, and an access token for every member."""
    from deployments.settings import Settings
    from gateway.auth.tokens import KeyRing
    from storage.db import Database
    from storage.secrets import Sealer

    settings = Settings.from_env()
    db = await Database.connect(settings, application_name="bench-chat")
    try:
        ring = KeyRing(db, Sealer.from_settings(settings), settings)
        await ring.load()
        users = [uuid.uuid4() for _ in range(rooms * per_room)]
        sessions = [uuid.uuid4() for _ in users]
        room_ids = [uuid.uuid4() for _ in range(rooms)]
        expires = datetime.now(UTC) + timedelta(hours=1)
        async with db.transaction() as conn:
            await conn.copy_records_to_table(
                "users",
                records=[
                    (u, f"bc_{u.hex[:20]}", f"bc_{u.hex[:20]}@example.com", "-") for u in users
                ],
                columns=["id", "username", "email", "password_hash"],
            )
            await conn.copy_records_to_table(
                "auth_sessions",
                records=[(s, u, expires) for s, u in zip(sessions, users, strict=True)],
                columns=["id", "user_id", "expires_at"],
            )
            await conn.copy_records_to_table(
                "chat_rooms",
                records=[
                    (r, "group", "bench", users[i * per_room]) for i, r in enumerate(room_ids)
                ],
                columns=["id", "kind", "name", "created_by"],
            )
            await conn.copy_records_to_table(
                "chat_members",
                records=[(room_ids[i // per_room], user) for i, user in enumerate(users)],
                columns=["room_id", "user_id"],
            )
        tokens = [ring.issue(u, ["user"], s).token for u, s in zip(users, sessions, strict=True)]
    finally:
        await db.close()
    return [
        (str(room), tokens[i * per_room : (i + 1) * per_room]) for i, room in enumerate(room_ids)
    ]


class Receipts:
    def __init__(self) -> None:
        self.at: dict[tuple[str, int], list[float]] = {}
        self.out_of_order = 0
        self.connected = 0
        self.peak = 0
        # Subscriptions that ended before the run did, by WebSocket close code (or error).
        self.ended_early: dict[str, int] = {}

    def ended(self, reason: str) -> None:
        self.ended_early[reason] = self.ended_early.get(reason, 0) + 1

    def got(self, key: tuple[str, int], now: float) -> None:
        self.at.setdefault(key, []).append(now)


async def nova_subscriber(
    url: str, token: str, room: str, receipts: Receipts, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"not acknowledged: {ack}")
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"room": room}},
                }
            )
        )
        receipts.connected += 1
        receipts.peak = max(receipts.peak, receipts.connected)
        ready.set()
        last = 0
        try:
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                except websockets.ConnectionClosed as closed:
                    code = (
                        closed.rcvd.code
                        if closed.rcvd
                        else (closed.sent.code if closed.sent else 0)
                    )
                    receipts.ended(f"close {code}")
                    return
                message = json.loads(raw)
                if message.get("type") in ("complete", "error"):
                    receipts.ended(str(message["type"]))
                    return
                if message.get("type") != "next":
                    continue
                if message["payload"].get("errors"):
                    error = message["payload"]["errors"][0]
                    error_code = (error.get("extensions") or {}).get("code")
                    receipts.ended(f"{error_code}: {str(error.get('message'))[:80]}")
                    return
                seq = message["payload"]["data"]["messageAdded"]["seq"]
                if seq != last + 1 and last != 0:
                    receipts.out_of_order += 1
                last = seq
                receipts.got((room, seq), time.perf_counter())
        finally:
            receipts.connected -= 1


async def run_nova(base_url: str, rooms: list[tuple[str, list[str]]], args: Args) -> dict[str, Any]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    receipts = Receipts()
    stop = asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()

    async def open_one(room: str, token: str) -> None:
        ready = asyncio.Event()
        async with gate:
            tasks.append(
                asyncio.create_task(nova_subscriber(url, token, room, receipts, ready, stop))
            )
            await asyncio.wait_for(ready.wait(), 60)

    opened = await asyncio.gather(
        *(open_one(room, token) for room, tokens in rooms for token in tokens),
        return_exceptions=True,
    )
    connect_s = time.perf_counter() - started
    failed_connects = sum(isinstance(o, BaseException) for o in opened)
    sent_at: dict[tuple[str, int], float] = {}
    senders: dict[str, SocketSender] = {}
    if args.send_over == "websocket":

        async def open_sender(token: str) -> SocketSender:
            async with gate:  # as many handshakes at once as the subscribers had
                return await SocketSender.open(url, token)

        opened_senders = await asyncio.gather(*(open_sender(tokens[0]) for _, tokens in rooms))
        senders = {room: sender for (room, _), sender in zip(rooms, opened_senders, strict=True)}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def send_http(room: str, token: str, index: int) -> int:
            variables = {"room": room, "text": f"m{index}", "cmid": f"b{index}"}
            data = await graphql(http, base_url, token, SEND, variables)
            return int(data["sendMessage"]["seq"])

        async def send(index: int) -> None:
            room, tokens = rooms[index % len(rooms)]
            started = time.perf_counter()
            if senders:
                seq = await senders[room].send(room, f"m{index}", f"b{index}")
            else:
                seq = await send_http(room, random.choice(tokens), index)
            sent_at[(room, seq)] = started

        try:
            run = await run_paced(
                send, count=args.messages, rate_per_s=args.rate, concurrency=64, deadline_s=300
            )
        finally:
            await asyncio.gather(*(s.close() for s in senders.values()), return_exceptions=True)
    expected = len(sent_at) * args.per_room
    deadline = time.perf_counter() + DRAIN_S
    while time.perf_counter() < deadline:
        if sum(len(v) for k, v in receipts.at.items() if k in sent_at) >= expected:
            break
        await asyncio.sleep(0.2)
    peak = receipts.peak
    stop.set()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, BaseException):
            receipts.ended(f"{type(outcome).__name__}: {str(outcome)[:120]}")
    latencies = [
        (t - sent_at[key]) * 1000
        for key, times in receipts.at.items()
        if key in sent_at
        for t in times
    ]
    duplicates = sum(max(0, len(times) - args.per_room) for times in receipts.at.values())
    return {
        "subscribers": len(rooms) * args.per_room,
        "send_over": args.send_over,
        "sender_connections": len(senders),
        "connected_peak": peak,
        "ended_early": receipts.ended_early,
        "failed_connects": failed_connects,
        "connect_s": round(connect_s, 1),
        "send": run.to_dict(),
        "delivered": len(latencies),
        "expected": expected,
        "out_of_order_or_gap": receipts.out_of_order,
        "duplicates": duplicates,
        "latency_ms": summarize(latencies),
    }


async def run_plain_broadcast(rooms: int, per_room: int, args: Args) -> dict[str, Any]:
    """The same fan-out through a plain `websockets` server in this process, nothing else."""
    members: dict[str, set[Any]] = {}

    async def handler(ws: Any) -> None:
        hello = json.loads(await ws.recv())
        if hello["role"] == "listen":
            members.setdefault(hello["room"], set()).add(ws)
            await ws.wait_closed()
            members[hello["room"]].discard(ws)
            return
        async for raw in ws:
            room = json.loads(raw)["room"]
            websockets.broadcast(members.get(room, set()), raw)

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        return await run_broadcast(f"ws://127.0.0.1:{port}", rooms, per_room, args)


def deploy_serve_broadcast() -> None:
    """The same broadcast server as a Serve deployment behind Serve's proxy: one replica,
    rooms in memory, no GraphQL, no auth, no persistence. What the proxy and Serve's
    WebSocket path cost on their own: the floor under Nova's gateway."""
    from ray import serve
    from starlette.types import Receive, Scope, Send
    from starlette.websockets import WebSocket, WebSocketDisconnect

    rooms: dict[str, set[WebSocket]] = {}

    async def broadcast(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        try:
            hello = json.loads(await ws.receive_text())
            if hello["role"] == "listen":
                members = rooms.setdefault(hello["room"], set())
                members.add(ws)
                try:
                    while True:
                        await ws.receive_text()
                finally:
                    members.discard(ws)
            while True:
                raw = await ws.receive_text()
                for member in list(rooms.get(json.loads(raw)["room"], ())):
                    with contextlib.suppress(Exception):
                        await member.send_text(raw)
        except WebSocketDisconnect:
            return

    @serve.deployment(
        name="BenchChatBare", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=10_000
    )
    @serve.ingress()
    class Broadcast:
        def __serve_build_asgi_app__(self) -> Any:
            return broadcast

    serve.run(
        Broadcast.bind(),  # type: ignore[attr-defined] # added by @serve.deployment
        name=SERVE_BROADCAST_APP,
        route_prefix=SERVE_BROADCAST_ROUTE,
        blocking=False,
    )


async def wait_for_socket(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with websockets.connect(url):
                return
        except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run_broadcast(url: str, rooms: int, per_room: int, args: Args) -> dict[str, Any]:
    """`rooms` x `per_room` listeners and one sender on a broadcast server at `url`, which
    relays each sender message as is to the listeners of its room; messages at `args.rate`."""
    received: list[float] = []
    expected = args.messages * per_room
    all_in = asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_listener(room: int) -> Any:
        async with gate:
            ws = await websockets.connect(url)
            await ws.send(json.dumps({"role": "listen", "room": str(room)}))
            return ws

    listeners = await asyncio.gather(
        *(open_listener(r) for r in range(rooms) for _ in range(per_room))
    )
    await asyncio.sleep(0.5)

    async def listen(ws: Any) -> None:
        try:
            async for raw in ws:
                received.append((time.perf_counter() - json.loads(raw)["t"]) * 1000)
                if len(received) >= expected:
                    all_in.set()
        except websockets.ConnectionClosed:
            pass

    readers = [asyncio.create_task(listen(ws)) for ws in listeners]
    sender = await websockets.connect(url)
    await sender.send(json.dumps({"role": "send"}))

    async def send(index: int) -> None:
        await sender.send(json.dumps({"room": str(index % rooms), "t": time.perf_counter()}))

    run = await run_paced(
        send, count=args.messages, rate_per_s=args.rate, concurrency=8, deadline_s=300
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), DRAIN_S)
    await sender.close()
    await asyncio.gather(*(ws.close() for ws in listeners), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "subscribers": rooms * per_room,
        "send": run.to_dict(),
        "delivered": len(received),
        "expected": expected,
        "latency_ms": summarize(received),
    }


def chat_goal(nova: dict[str, Any], floor: dict[str, Any], args: Args) -> Goal:
    """Nova's delivery p99 over the bare Serve broadcast's, the offered rate sent and every
    message delivered once, in order."""
    sent_per_s = nova["send"]["achieved_per_s"]
    delivered = nova["delivered"] / nova["expected"] if nova["expected"] else 0.0
    whole = (
        sent_per_s >= 0.95 * args.rate
        and delivered == 1.0
        and nova["duplicates"] == 0
        and nova["out_of_order_or_gap"] == 0
    )
    return Goal(
        f"chat delivery p99, {args.rooms} rooms of {args.per_room} at {args.rate:g} msg/s",
        nova["latency_ms"]["p99"],
        floor["latency_ms"]["p99"],
        "ms",
        "bare Serve WebSocket broadcast, p99",
        at_most=3.0,
        also=whole,
        note=f"sent {sent_per_s:g}/s, delivered {100 * delivered:.1f}%",
    )


def parse(argv: list[str] | None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=Args.rooms)
    parser.add_argument("--per-room", type=int, default=Args.per_room)
    parser.add_argument("--rate", type=float, default=Args.rate)
    parser.add_argument("--messages", type=int, default=Args.messages)
    parser.add_argument("--send-over", choices=("websocket", "http"), default=Args.send_over)
    parser.add_argument(
        "--floors-only",
        action="store_true",
        help="measure only the two broadcast baselines (plain websockets, and through Serve)",
    )
    values = parser.parse_args(argv)
    if not (1 <= values.rooms <= 1_000 and 1 <= values.per_room <= 500):
        parser.error("--rooms 1..1000, --per-room 1..500")
    if not (0 < values.rate <= 10_000 and 1 <= values.messages <= 100_000):
        parser.error("--rate (0, 10000], --messages 1..100000")
    args = Args()
    args.rooms, args.per_room = values.rooms, values.per_room
    args.rate, args.messages = values.rate, values.messages
    args.send_over = values.send_over
    args.floors_only = values.floors_only
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    async def run(base_url: str) -> dict[str, Any]:
        nova: dict[str, Any] | None = None
        if not args.floors_only:
            nova = await run_nova(base_url, await seed(args.rooms, args.per_room), args)
        plain = await run_plain_broadcast(args.rooms, args.per_room, args)
        deploy_serve_broadcast()
        url = base_url.replace("http://", "ws://") + SERVE_BROADCAST_ROUTE + "/"
        await wait_for_socket(url)
        through_serve = await run_broadcast(url, args.rooms, args.per_room, args)
        results: dict[str, Any] = {
            "rooms": args.rooms,
            "per_room": args.per_room,
            "rate_per_s": args.rate,
            "messages": args.messages,
            "nova": nova,
            "baseline_websockets_broadcast": plain,
            "baseline_serve_broadcast": through_serve,
        }
        floors = latency_ratios(through_serve, plain, "serve_broadcast_{}_over_plain")
        if nova is None:
            return results | {"ratios": floors}
        return results | {
            "ratios": floors
            | latency_ratios(nova, plain, "{}")
            | latency_ratios(nova, through_serve, "{}_over_serve_broadcast")
            | {
                "delivered_share": ratio(nova["delivered"], nova["expected"]),
            },
            "goals": [chat_goal(nova, through_serve, args).to_dict()],
            "targets": {"p99_ms": 100, "exactly_once_in_order": True},
            "met": {
                "p99_ms": (nova["latency_ms"]["p99"] or 1e9) < 100,
                "exactly_once_in_order": nova["delivered"] == nova["expected"]
                and nova["duplicates"] == 0
                and nova["out_of_order_or_gap"] == 0,
            },
        }

    def delete_serve_broadcast() -> None:
        from ray import serve

        with contextlib.suppress(Exception):
            serve.delete(SERVE_BROADCAST_APP)

    return run_on_ray(SCENARIO, run, cleanup=delete_serve_broadcast)


if __name__ == "__main__":
    raise SystemExit(main())
