"""One Redis pub/sub connection per gateway replica, shared by its WebSocket subscribers.

Shards publish on Redis channels (`nova:feed:<user>`, `nova:chat:<room>`); every replica
subscribes to the channels its own clients listen to, once each, and copies each message
into the bounded queue of every local subscriber, decoded once for all of them (so a
room's subscribers share one event object: `gateway.transport.shared_events`). A subscriber that
falls behind is marked `overflowed` instead of holding up the others; what to do then
(drop, disconnect) is the subscription's decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from storage.errors import classify
from storage.tasks import Backoff

log = logging.getLogger(__name__)

SUBSCRIBE_ATTEMPTS = 3


_NOT_YET = object()
_UNDECODABLE = object()


def as_text(raw: bytes) -> str:
    return raw.decode()


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Any]
    # Publication → what the queue receives; subscribers with the same function share
    # each decoded item.
    decode: Callable[[bytes], Any] = as_text
    overflowed: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class PubSubHub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self.dropped = 0

    @contextlib.asynccontextmanager
    async def listen(
        self,
        channel: str,
        *,
        max_queue: int = 1_000,
        decode: Callable[[bytes], Any] = as_text,
    ) -> AsyncIterator[Subscriber]:
        """Messages published on `channel` while the block runs, in a bounded queue, each
        decoded by `decode` (the text by default). A publication that `decode` refuses is
        logged and skipped."""
        subscriber = Subscriber(asyncio.Queue(max_queue), decode)
        first = not self._subscribers[channel]
        self._subscribers[channel].add(subscriber)
        try:
            if first:
                await self._subscribe(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="pubsub-hub")
            yield subscriber
        finally:
            self._subscribers[channel].discard(subscriber)
            if not self._subscribers[channel]:
                del self._subscribers[channel]
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        """SUBSCRIBE on the hub's connection. That connection may have died while no reader
        watched it (Redis restarted with nobody subscribed): the failed attempt drops it,
        and the next one connects afresh. Still failing after `SUBSCRIBE_ATTEMPTS`, the
        subscription ends with `UNAVAILABLE`."""
        backoff = Backoff(base_ms=50, cap_ms=500)
        for attempt in range(1, SUBSCRIBE_ATTEMPTS + 1):
            try:
                await self._pubsub.subscribe(channel)
                return
            except (RedisError, OSError) as exc:
                if attempt == SUBSCRIBE_ATTEMPTS:
                    raise classify(exc, "redis") from exc
                log.info("pub/sub hub: subscribing to %s failed (%s); retrying", channel, exc)
                await backoff.sleep()

    async def _read(self) -> None:
        backoff = Backoff(cap_ms=2_000)
        while self._subscribers:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                backoff.reset()
            except (RedisError, OSError) as exc:
                log.warning("pub/sub hub: Redis subscription lost (%s); resubscribing", exc)
                await backoff.sleep()
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.subscribe(*self._subscribers)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            decoded: dict[Callable[[bytes], Any], Any] = {}
            for subscriber in list(self._subscribers.get(channel, ())):
                item = decoded.get(subscriber.decode, _NOT_YET)
                if item is _NOT_YET:
                    item = decoded[subscriber.decode] = _decode(
                        subscriber.decode, channel, message["data"]
                    )
                if item is _UNDECODABLE:
                    continue
                try:
                    subscriber.queue.put_nowait(item)
                except asyncio.QueueFull:
                    subscriber.overflowed = True
                    subscriber.gone.set()
                    self.dropped += 1

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]


def _decode(decode: Callable[[bytes], Any], channel: str, data: bytes) -> Any:
    try:
        return decode(data)
    except Exception:
        log.warning("pub/sub hub: skipped an undecodable message on %s", channel, exc_info=True)
        return _UNDECODABLE
