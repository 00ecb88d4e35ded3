"""Who is watching a chat room: a sorted set per room in Redis.

Gateway replicas add a member while one of their WebSocket connections watches the room (a
`messageAdded` or `presence` subscription), scored by when the entry lapses, and renew it
on a heartbeat; the notifications consumer reads it to skip members who saw a message live.
"""

from __future__ import annotations

import time
import uuid
from typing import cast

import redis.asyncio as aioredis

# Members are `<user id>:<connection>`, scored by the time their entry lapses.
ONLINE_KEY = "nova:chat:{}:online"


async def online_users(redis: aioredis.Redis, room_id: uuid.UUID) -> list[uuid.UUID]:
    """Members with a live connection watching the room (a subscription to its messages
    or its presence) on any gateway replica."""
    return (await online_in_rooms(redis, [room_id]))[room_id]


async def online_in_rooms(
    redis: aioredis.Redis, room_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """`online_users` of several rooms in one round trip."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for room_id in room_ids:
            pipe.zrangebyscore(ONLINE_KEY.format(room_id), now, "+inf")
        replies = cast(list[list[bytes]], await pipe.execute())
    return {
        room_id: sorted({uuid.UUID(m.decode().partition(":")[0]) for m in members})
        for room_id, members in zip(room_ids, replies, strict=True)
    }
