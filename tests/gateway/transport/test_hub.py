"""The replica's pub/sub hub against the real Redis: a connection that died while nobody
listened does not fail the next subscription."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from deployments.settings import Settings
from gateway.transport.hub import PubSubHub
from storage.redis_client import make_redis
from tests.conftest import wait_until
from tests.support.subscriptions import redis_subscribed

pytestmark = pytest.mark.stack


async def test_a_subscription_after_the_hub_connection_was_killed_still_works(
    settings: Settings,
) -> None:
    redis = make_redis(settings)
    # As Nova's clients, but checking an idle connection's health after 1 s, not 30.
    hub_client = aioredis.Redis.from_url(settings.redis_url, health_check_interval=1)
    hub = PubSubHub(hub_client)
    first, second = (f"nova:test:hub:{uuid.uuid4().hex}" for _ in range(2))
    try:
        async with hub.listen(first) as subscriber:
            await redis_subscribed(redis, first)
            await redis.publish(first, "one")
            assert await asyncio.wait_for(subscriber.queue.get(), 10) == "one"
        await wait_until(  # the hub's reader stops once nobody listens
            lambda: asyncio.sleep(0, hub._reader is None or hub._reader.done()),
            timeout_s=10,
            message="the hub's reader stopped",
        )
        # What a Redis restart does to the idle hub: the server drops its connection (the
        # one whose last command was the UNSUBSCRIBE above).
        clients = await redis.client_list()
        idle = [client["id"] for client in clients if client.get("cmd") == "unsubscribe"]
        assert idle
        for client_id in idle:
            await redis.client_kill_filter(_id=client_id)
        await asyncio.sleep(1.1)  # idle long enough for the next command to PING first
        async with hub.listen(second) as subscriber:
            await redis_subscribed(redis, second)
            await redis.publish(second, "two")
            assert await asyncio.wait_for(subscriber.queue.get(), 10) == "two"
    finally:
        await hub.close()
        await hub_client.aclose()
        await redis.aclose()


async def test_subscribers_of_a_channel_share_each_decoded_message(settings: Settings) -> None:
    """Decoded once per publication: a room's subscribers get the same object (what lets
    `gateway.transport.shared_events` execute it once); an undecodable one is skipped, not fatal."""
    redis = make_redis(settings)
    hub_client = aioredis.Redis.from_url(settings.redis_url)
    hub = PubSubHub(hub_client)
    channel = f"nova:test:hub:{uuid.uuid4().hex}"
    decoded: list[bytes] = []

    def parse(raw: bytes) -> dict[str, int]:
        decoded.append(raw)
        return {"n": int(raw)}

    try:
        async with (
            hub.listen(channel, decode=parse) as first,
            hub.listen(channel, decode=parse) as second,
            hub.listen(channel) as as_text,
        ):
            await redis_subscribed(redis, channel)
            await redis.publish(channel, "not a number")
            await redis.publish(channel, "7")
            one, two = [await asyncio.wait_for(s.queue.get(), 10) for s in (first, second)]
            assert one == {"n": 7}
            assert one is two
            assert decoded == [b"not a number", b"7"]  # once per publication, not per subscriber
            texts = [await asyncio.wait_for(as_text.queue.get(), 10) for _ in range(2)]
            assert texts == ["not a number", "7"]
    finally:
        await hub.close()
        await hub_client.aclose()
        await redis.aclose()
