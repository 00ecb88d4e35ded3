"""Waiting for a live subscription on the server's side instead of sleeping: a test that
publishes before the subscription exists tests nothing."""

from __future__ import annotations

import uuid
from typing import Any, cast

from storage.presence import online_users
from tests.conftest import wait_until

WAIT_S = 30.0


async def redis_subscribed(redis: Any, channel: str, *, at_least: int = 1) -> None:
    """Until Redis counts `at_least` connections subscribed to `channel` (each gateway
    replica, or a test's own hub, subscribes once per channel)."""

    async def subscribed() -> bool:
        counts = cast(list[tuple[bytes, int]], await redis.pubsub_numsub(channel))
        return bool(counts) and counts[0][1] >= at_least

    await wait_until(subscribed, timeout_s=WAIT_S, interval_s=0.02, message=f"{channel} subscribed")


async def watching_room(redis: Any, room: str, *user_ids: str) -> None:
    """Until every one of `user_ids` counts as online in `room`: each has a `messageAdded`
    or `presence` subscription whose Redis subscription is already in place (the gateway
    enters the pub/sub hub before it marks the member online)."""
    wanted = {uuid.UUID(user_id) for user_id in user_ids}

    async def online() -> bool:
        return wanted <= set(await online_users(redis, uuid.UUID(room)))

    await wait_until(online, timeout_s=WAIT_S, interval_s=0.02, message=f"{user_ids} online")
