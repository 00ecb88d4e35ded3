"""Blocks in shared rooms, through the Serve app: when a block stands between two members
of a room (someone else put them there together), neither sees the other through it: not
their messages (history, replay, live), not their profile (members, read markers,
presence), not their typing. The room goes on for everyone else."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployments.settings import Settings
from gateway.services.chat import TYPING_CHANNEL
from storage.db import Database
from tests.support.chat import ADDED, HISTORY, operation, room_of, send, subscribed
from tests.support.social import BLOCK, Member, call, make_members
from tests.support.subscriptions import redis_subscribed, watching_room

pytestmark = pytest.mark.stack

ROOM = """
query($room: ID!) {
  chatRoom(id: $room) {
    unreadCount lastMessage { text } members { id } readUpTo { user { id } }
  }
}
"""
ADD = "mutation($room: ID!, $ids: [ID!]!) { addRoomMembers(roomId: $room, userIds: $ids) { id } }"
TYPING = "subscription($room: ID!) { typing(roomId: $room) { user { id } } }"
PRESENCE = "subscription($room: ID!) { presence(roomId: $room) { online { id } } }"
SEND_TYPING = "mutation($room: ID!) { sendTyping(roomId: $room) }"
WAIT_S = 30


async def texts(http_url: str, member: Member, room: str) -> list[str]:
    edges = (await call(http_url, member, HISTORY, room=room, last=50)).ok()["messages"]["edges"]
    return [e["node"]["text"] for e in edges]


async def first_texts(session: Any, room: str, count: int) -> list[str]:
    seen: list[str] = []
    async for result in session.subscribe(operation(ADDED, room=room)):
        seen.append(result["messageAdded"]["text"])
        if len(seen) == count:
            return seen
    raise AssertionError("the subscription ended")


async def online_ids(stream: Any) -> set[str]:
    update = await asyncio.wait_for(anext(stream), WAIT_S)
    return {u["id"] for u in update["presence"]["online"]}


async def test_a_block_hides_the_two_members_from_each_other_in_a_group_room(
    http_url: str, db: Database, settings: Settings
) -> None:
    blocker, blocked, host = await make_members(db, settings, 3, prefix="grpblk")
    assert (await call(http_url, blocker, BLOCK, id=blocked.id)).ok()
    room = await room_of(http_url, host, blocker, blocked, name="host's party")
    (await send(http_url, blocker, room, "from the blocker")).ok()
    (await send(http_url, host, room, "from the host")).ok()
    (await send(http_url, blocked, room, "from the blocked")).ok()

    assert await texts(http_url, blocked, room) == ["from the host", "from the blocked"]
    assert await texts(http_url, blocker, room) == ["from the blocker", "from the host"]
    assert await texts(http_url, host, room) == [
        "from the blocker",
        "from the host",
        "from the blocked",
    ]
    last_seen = {blocked.id: "from the blocked", blocker.id: "from the host"}
    for viewer in (blocked, blocker):
        seen = (await call(http_url, viewer, ROOM, room=room)).ok()["chatRoom"]
        assert {m["id"] for m in seen["members"]} == {viewer.id, host.id}
        assert {m["user"]["id"] for m in seen["readUpTo"]} == {viewer.id, host.id}
        assert seen["lastMessage"]["text"] == last_seen[viewer.id]
        assert seen["unreadCount"] == 1  # the host's message; not the hidden member's
    everyone = (await call(http_url, host, ROOM, room=room)).ok()["chatRoom"]["members"]
    assert {m["id"] for m in everyone} == {blocker.id, blocked.id, host.id}

    # Replayed from seq 0: the blocked member gets what the host and they sent.
    async with subscribed(http_url, blocked) as session:
        replayed: list[str] = []
        async for result in session.subscribe(operation(ADDED, room=room, after=0)):
            replayed.append(result["messageAdded"]["text"])
            if len(replayed) == 2:
                break
    assert replayed == ["from the host", "from the blocked"]


async def test_live_messages_and_typing_across_a_block_reach_neither_member(
    http_url: str, db: Database, settings: Settings, redis: Any
) -> None:
    blocker, blocked, host, fourth = await make_members(db, settings, 4, prefix="liveblk")
    room = await room_of(http_url, host, blocker, fourth, name="before the block")
    assert (await call(http_url, blocker, BLOCK, id=blocked.id)).ok()
    # Someone else puts the blocked user in the blocker's room.
    (await call(http_url, host, ADD, room=room, ids=[blocked.id])).ok()

    async with (
        subscribed(http_url, blocked) as theirs,
        subscribed(http_url, blocker) as mine,
    ):
        watchers = [asyncio.ensure_future(first_texts(s, room, 2)) for s in (theirs, mine)]
        await watching_room(redis, room, blocked.id, blocker.id)
        (await send(http_url, blocker, room, "blocker, live")).ok()
        (await send(http_url, blocked, room, "blocked, live")).ok()
        (await send(http_url, host, room, "host, live")).ok()
        seen_by_blocked, seen_by_blocker = await asyncio.wait_for(asyncio.gather(*watchers), WAIT_S)
        assert seen_by_blocked == ["blocked, live", "host, live"]
        assert seen_by_blocker == ["blocker, live", "host, live"]

        typed = asyncio.ensure_future(anext(theirs.subscribe(operation(TYPING, room=room))))
        await redis_subscribed(redis, TYPING_CHANNEL.format(room))
        assert (await call(http_url, blocker, SEND_TYPING, room=room)).ok()
        assert (await call(http_url, host, SEND_TYPING, room=room)).ok()
        first_typist = (await asyncio.wait_for(typed, WAIT_S))["typing"]["user"]["id"]
        assert first_typist == host.id

        # Presence: the blocker is online in the room; the blocked member's presence
        # never shows them, and does show the host once the host comes.
        blockers_presence = mine.subscribe(operation(PRESENCE, room=room))
        assert await online_ids(blockers_presence) == {blocker.id}
        await watching_room(redis, room, blocker.id)
        online = theirs.subscribe(operation(PRESENCE, room=room))
        shown = await online_ids(online)
        assert shown == {blocked.id}
        async with subscribed(http_url, host) as hosts:
            hosts_presence = hosts.subscribe(operation(PRESENCE, room=room))
            everyone = await online_ids(hosts_presence)
            for _ in range(5):
                if everyone == {host.id, blocker.id, blocked.id}:
                    break
                everyone = await online_ids(hosts_presence)
            assert everyone == {host.id, blocker.id, blocked.id}
            for _ in range(5):
                if host.id in shown:
                    break
                shown = await online_ids(online)
            assert shown == {blocked.id, host.id}
            # Nor the other way: the blocker's next change is the host, not the blocked.
            assert await online_ids(blockers_presence) == {blocker.id, host.id}
