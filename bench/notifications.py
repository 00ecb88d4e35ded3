"""Notifications benchmark: an act → the live push to the person it concerns, in one run.

    cd /work/main && .venv/bin/python -m bench.notifications [--recipients 20 --fans 10 --rate 20]

Needs the dev stack started with `bench/bench.env` (see docs/benchmarks.md). Nova: each recipient
holds a graphql-transport-ws connection through Serve's proxy, subscribed to
`notificationAdded`; fans `follow` recipients over HTTP at `--rate` per second. Latency is
the start of the `follow` request → the push at the recipient: the commit, the outbox
relay, Kafka, the `notifications` consumer's ledger transaction, Redis pub/sub and the
gateway. Then the same for chat: each fan opens a direct room with each recipient (who is
not watching it) and sends one message; latency is the start of `sendMessage` → the
MESSAGE push, which adds the room's members and presence to the consumer's work.
Baseline, same run, same count and rate: notify on write — the notification row
inserted and published to Redis in the request's own path (no outbox, no consumer, no
gateway), received by a plain Redis subscriber: the floor of a durable push.

Checks: delivered / expected and duplicates. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import websockets

from bench.goals import Goal
from bench.harness import PacedResult, ratio, run_on_ray, run_paced, summarize
from bench.seed import insert_users, issue_tokens

SCENARIO = "notifications"
FOLLOW = "mutation($id: ID!) { follow(userId: $id) }"
OPEN_ROOM = "mutation($ids: [ID!]!) { createRoom(input: {memberIds: $ids}) { id } }"
SEND = """
mutation($room: ID!, $cmid: String!) {
  sendMessage(input: {roomId: $room, text: "are you there?", clientMessageId: $cmid}) { seq }
}
"""
LIVE = "subscription { notificationAdded { id kind actor { id } } }"
CONCURRENCY = 16
DRAIN_S = 30.0
BASELINE_CHANNEL = "bench:notify:{}"


class Args:
    recipients = 20
    fans = 10
    rate = 20.0


async def subscribe(url: str, token: str, on_push: Any, ready: asyncio.Event) -> None:
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"not acknowledged: {ack}")
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": LIVE}}))
        ready.set()
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "next":
                on_push(message["payload"]["data"]["notificationAdded"], time.perf_counter())


async def paced_then_drained(
    operation: Callable[[int], Awaitable[None]], count: int, rate: float, all_in: asyncio.Event
) -> PacedResult:
    """`count` operations at `rate`, then up to `DRAIN_S` for the last pushes to arrive (a
    missing one shows as delivered < expected)."""
    run = await run_paced(
        operation,
        count=count,
        rate_per_s=rate,
        concurrency=CONCURRENCY,
        deadline_s=count / rate + 60,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), DRAIN_S)
    return run


async def call(
    http: aiohttp.ClientSession, base_url: str, token: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    body = {"query": query, "variables": variables}
    headers = {"authorization": f"Bearer {token}"}
    async with http.post(f"{base_url}/graphql", json=body, headers=headers) as reply:
        payload = await reply.read()
    if reply.status != 200 or b'"errors"' in payload:
        raise RuntimeError(f"{reply.status}: {payload[:200]!r}")
    data: dict[str, Any] = json.loads(payload)["data"]
    return data


async def run_nova(
    base_url: str, db: Any, settings: Any, args: Args, *, act: str
) -> dict[str, Any]:
    """`act`: "follow" (fan follows recipient) or "message" (fan writes in their room)."""
    recipients = await insert_users(db, args.recipients)
    fans = await insert_users(db, args.fans)
    tokens = await issue_tokens(db, settings, recipients + fans)
    recipient_tokens, fan_tokens = tokens[: len(recipients)], tokens[len(recipients) :]
    pairs = [(r, f) for r in range(len(recipients)) for f in range(len(fans))]
    sent: dict[tuple[str, str], float] = {}
    received: dict[tuple[str, str], float] = {}
    all_in = asyncio.Event()
    duplicates = 0

    def pushed_to(recipient: str) -> Any:
        def on_push(data: dict[str, Any], at: float) -> None:
            nonlocal duplicates
            key = (recipient, data["actor"]["id"])
            if key in received:
                duplicates += 1
            received[key] = at
            if len(received) >= len(pairs):
                all_in.set()

        return on_push

    ws_url = base_url.replace("http://", "ws://") + "/graphql"
    readies = [asyncio.Event() for _ in recipients]
    listeners = [
        asyncio.create_task(subscribe(ws_url, token, pushed_to(str(user)), ready))
        for user, token, ready in zip(recipients, recipient_tokens, readies, strict=True)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        await asyncio.sleep(0.5)  # subscriptions registered on their replica
        connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
        async with aiohttp.ClientSession(connector=connector) as http:
            rooms: dict[tuple[int, int], str] = {}
            if act == "message":
                for r, f in pairs:  # set-up, not measured
                    variables = {"ids": [str(recipients[r])]}
                    opened = await call(http, base_url, fan_tokens[f], OPEN_ROOM, variables)
                    rooms[(r, f)] = opened["createRoom"]["id"]

            async def one(index: int) -> None:
                r, f = pairs[index]
                key = (str(recipients[r]), str(fans[f]))
                if act == "follow":
                    query, variables = FOLLOW, {"id": key[0]}
                else:
                    query, variables = SEND, {"room": rooms[(r, f)], "cmid": f"bench-{index}"}
                sent[key] = time.perf_counter()
                await call(http, base_url, fan_tokens[f], query, variables)

            run = await paced_then_drained(one, len(pairs), args.rate, all_in)
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    latencies = [(received[k] - sent[k]) * 1000 for k in sent if k in received]
    return {
        "recipients": len(recipients),
        "acts": run.to_dict(),
        "delivered": len(latencies),
        "expected": len(sent),
        "duplicates": duplicates,
        "latency_ms": summarize(latencies),
    }


async def run_baseline(db: Any, redis: Any, args: Args) -> dict[str, Any]:
    """Notify on write: insert the row and publish it from the writer, no outbox."""
    from storage.repositories.notifications import NewNotification, insert_notifications

    recipients = await insert_users(db, args.recipients)
    fans = await insert_users(db, args.fans)
    pairs = [(r, f) for r in recipients for f in fans]
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    all_in = asyncio.Event()
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*(BASELINE_CHANNEL.format(r) for r in recipients))

    async def listen() -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "message":
                received[json.loads(message["data"])["actor_id"]] = time.perf_counter()
                if len(received) >= len(pairs):
                    all_in.set()

    listener = asyncio.create_task(listen())
    try:

        async def notify(index: int) -> None:
            user, actor = pairs[index]
            key = f"{actor}:{user}"
            sent[key] = time.perf_counter()
            async with db.transaction() as conn:
                [record] = await insert_notifications(
                    conn, [NewNotification(user, "follow", actor, None, datetime.now(UTC))]
                )
            body = {**record.to_json(), "actor_id": key}
            await redis.publish(BASELINE_CHANNEL.format(user), json.dumps(body))

        run = await paced_then_drained(notify, len(pairs), args.rate, all_in)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await pubsub.aclose()
    latencies = [(received[k] - sent[k]) * 1000 for k in sent if k in received]
    return {
        "writes": run.to_dict(),
        "delivered": len(latencies),
        "expected": len(sent),
        "latency_ms": summarize(latencies),
    }


def notification_goals(
    follows: dict[str, Any], messages: dict[str, Any], baseline: dict[str, Any], args: Args
) -> list[Goal]:
    """The act → push latency over notify on write's, each push delivered once."""
    floor = "notify on write (insert, Redis publish)"

    def whole(nova: dict[str, Any]) -> bool:
        return bool(nova["delivered"] == nova["expected"] and nova["duplicates"] == 0)

    def delivered(nova: dict[str, Any]) -> str:
        return f"{nova['delivered']} of {nova['expected']} pushed, {nova['duplicates']} twice"

    return [
        Goal(
            f"follow to push p50 at {args.rate:g}/s",
            follows["latency_ms"]["p50"],
            baseline["latency_ms"]["p50"],
            "ms",
            f"{floor}, p50",
            also=whole(follows),
            note=delivered(follows),
        ),
        Goal(
            f"follow to push p99 at {args.rate:g}/s",
            follows["latency_ms"]["p99"],
            baseline["latency_ms"]["p99"],
            "ms",
            f"{floor}, p99",
            also=whole(follows),
            note=delivered(follows),
        ),
        Goal(
            f"sendMessage to MESSAGE push p99 at {args.rate:g}/s",
            messages["latency_ms"]["p99"],
            baseline["latency_ms"]["p99"],
            "ms",
            f"{floor}, p99",
            also=whole(messages),
            note=delivered(messages),
        ),
    ]


def parse(argv: list[str] | None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=Args.recipients)
    parser.add_argument("--fans", type=int, default=Args.fans)
    parser.add_argument("--rate", type=float, default=Args.rate, help="follows per second")
    parsed = parser.parse_args(argv)
    args = Args()
    args.recipients, args.fans, args.rate = parsed.recipients, parsed.fans, parsed.rate
    if min(args.recipients, args.fans) < 1 or args.rate <= 0:
        parser.error("--recipients and --fans must be >= 1, --rate > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    async def run(base_url: str) -> dict[str, Any]:
        from deployments.settings import Settings
        from storage.db import Database
        from storage.redis_client import make_redis

        settings = Settings.from_env()
        db = await Database.connect(settings, application_name="bench-notifications")
        redis = make_redis(settings)
        try:
            nova = await run_nova(base_url, db, settings, args, act="follow")
            messages = await run_nova(base_url, db, settings, args, act="message")
            baseline = await run_baseline(db, redis, args)
        finally:
            await redis.aclose()
            await db.close()
        return {
            "rate_per_s": args.rate,
            "nova_follow_to_push": nova,
            "nova_message_to_push": messages,
            "baseline_notify_on_write": baseline,
            "ratios": {
                "p50": ratio(nova["latency_ms"]["p50"], baseline["latency_ms"]["p50"]),
                "p99": ratio(nova["latency_ms"]["p99"], baseline["latency_ms"]["p99"]),
                "message_p50": ratio(messages["latency_ms"]["p50"], baseline["latency_ms"]["p50"]),
                "message_p99": ratio(messages["latency_ms"]["p99"], baseline["latency_ms"]["p99"]),
            },
            "goals": [g.to_dict() for g in notification_goals(nova, messages, baseline, args)],
            "met": {
                "every_push_delivered": all(
                    n["delivered"] == n["expected"] for n in (nova, messages)
                ),
                "no_duplicates": nova["duplicates"] == 0 and messages["duplicates"] == 0,
            },
        }

    return run_on_ray(SCENARIO, run)


if __name__ == "__main__":
    sys.exit(main())
