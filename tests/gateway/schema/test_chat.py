"""Chat end to end through the Serve app: rooms, ordered idempotent sends, history, read
markers, live delivery with replay, typing and presence, blocks, and a shard kill."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import ray
from gql.transport.exceptions import TransportQueryError
from websockets.typing import Subprotocol

from actors.directory import shard_name, shard_of
from actors.remote import CHAT, NAMESPACE
from deployments.settings import Settings
from gateway.services.chat import READ_CHANNEL, TYPING_CHANNEL
from gateway.transport.hub import PubSubHub
from storage.db import Database
from storage.redis_client import make_redis
from tests.conftest import wait_until
from tests.support.chat import (
    ADDED,
    CREATE,
    HISTORY,
    collect,
    operation,
    room_of,
    send,
    subscribed,
)
from tests.support.social import BLOCK, Member, call, make_members
from tests.support.subscriptions import redis_subscribed, watching_room

pytestmark = pytest.mark.stack

# -- rooms ---------------------------------------------------------------------------------


async def test_direct_rooms_are_one_per_pair_and_groups_are_named(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, c = await make_members(db, settings, 3)
    first = (await call(http_url, a, CREATE, ids=[b.id])).ok()["createRoom"]
    again = (await call(http_url, b, CREATE, ids=[a.id, b.id])).ok()["createRoom"]
    assert first["id"] == again["id"]
    assert first["kind"] == "DIRECT"
    assert {m["id"] for m in first["members"]} == {a.id, b.id}
    group = (await call(http_url, a, CREATE, ids=[b.id, c.id], name="trio")).ok()["createRoom"]
    assert (group["kind"], group["name"], len(group["members"])) == ("GROUP", "trio", 3)
    assert (await call(http_url, a, CREATE, ids=[a.id])).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, a, CREATE, ids=[str(uuid.uuid4())])).codes == ["NOT_FOUND"]
    assert (await call(http_url, None, CREATE, ids=[b.id])).codes == ["UNAUTHENTICATED"]


async def test_members_add_and_leave_group_rooms_only(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, c, outsider = await make_members(db, settings, 4)
    group = await room_of(http_url, a, b, c)
    add = "mutation($room: ID!, $ids: [ID!]!) { addRoomMembers(roomId: $room, userIds: $ids) { members { id } } }"  # noqa: E501
    leave = "mutation($room: ID!) { leaveRoom(roomId: $room) }"
    assert (await call(http_url, outsider, add, room=group, ids=[outsider.id])).codes == [
        "FORBIDDEN"
    ]
    added = (await call(http_url, a, add, room=group, ids=[outsider.id])).ok()["addRoomMembers"]
    assert outsider.id in {m["id"] for m in added["members"]}
    assert (await call(http_url, outsider, leave, room=group)).ok() == {"leaveRoom": True}
    assert (await send(http_url, outsider, group, "still here?")).codes == ["FORBIDDEN"]
    direct = await room_of(http_url, a, c)
    assert (await call(http_url, a, add, room=direct, ids=[b.id])).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, a, leave, room=direct)).codes == ["BAD_USER_INPUT"]


# -- messages ------------------------------------------------------------------------------


async def test_send_is_ordered_idempotent_and_validated(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, outsider = await make_members(db, settings, 3)
    room = await room_of(http_url, a, b)
    first = (await send(http_url, a, room, "hello", "c-1")).ok()["sendMessage"]
    retry = (await send(http_url, a, room, "hello", "c-1")).ok()["sendMessage"]
    second = (await send(http_url, b, room, "hi", "c-1")).ok()["sendMessage"]  # b's own c-1
    assert (first["seq"], second["seq"]) == (1, 2)
    assert retry == first
    assert first["sender"]["id"] == a.id
    assert first["roomId"] == room
    async with db.connection() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM chat_messages WHERE room_id = $1", uuid.UUID(room)
        )
        events = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE type = 'chat.message.sent' AND aggregate_id = $1",
            room,
        )
    assert stored == events == 2
    for text in ("", "   ", "x" * 4001):
        assert (await send(http_url, a, room, text)).codes == ["BAD_USER_INPUT"]
    assert (await send(http_url, a, room, "ok", "k" * 129)).codes == ["BAD_USER_INPUT"]
    assert (await send(http_url, outsider, room, "let me in")).codes == ["FORBIDDEN"]
    assert (await send(http_url, a, str(uuid.uuid4()), "nowhere")).codes == ["NOT_FOUND"]


async def test_history_pages_back_newest_last(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, outsider = await make_members(db, settings, 3)
    room = await room_of(http_url, a, b)
    for n in range(1, 8):
        (await send(http_url, a if n % 2 else b, room, f"m{n}")).ok()
    newest = (await call(http_url, b, HISTORY, room=room, last=3)).ok()["messages"]
    assert [e["node"]["seq"] for e in newest["edges"]] == [5, 6, 7]
    assert newest["pageInfo"]["hasPreviousPage"] is True
    older = (
        await call(
            http_url, b, HISTORY, room=room, last=10, before=newest["pageInfo"]["startCursor"]
        )
    ).ok()["messages"]
    assert [e["node"]["text"] for e in older["edges"]] == ["m1", "m2", "m3", "m4"]
    assert older["pageInfo"]["hasPreviousPage"] is False
    assert (await call(http_url, outsider, HISTORY, room=room)).codes == ["FORBIDDEN"]
    assert (await call(http_url, b, HISTORY, room=room, last=101)).codes == ["BAD_USER_INPUT"]


async def test_read_markers_unread_counts_and_rooms_by_activity(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, c = await make_members(db, settings, 3)
    quiet = await room_of(http_url, a, c)
    busy = await room_of(http_url, a, b)
    for n in range(3):
        (await send(http_url, b, busy, f"from b {n}")).ok()
    (await send(http_url, a, busy, "from a")).ok()
    rooms = """
    { chatRooms { edges { node { id unreadCount lastMessage { text seq }
      readUpTo { seq user { id } } } } } }
    """
    listed = (await call(http_url, a, rooms)).ok()["chatRooms"]["edges"]
    assert [e["node"]["id"] for e in listed] == [busy, quiet]
    assert listed[0]["node"]["unreadCount"] == 3  # b's three; a's own does not count
    assert listed[0]["node"]["lastMessage"] == {"text": "from a", "seq": 4}
    mark = "mutation($room: ID!, $seq: Int!) { markRoomRead(roomId: $room, seq: $seq) }"
    assert (await call(http_url, a, mark, room=busy, seq=2)).ok() == {"markRoomRead": True}
    assert (await call(http_url, a, mark, room=busy, seq=1)).ok()  # never moves back
    assert (await call(http_url, a, mark, room=busy, seq=99)).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, c, mark, room=busy, seq=1)).codes == ["NOT_FOUND"]
    node = (await call(http_url, a, rooms)).ok()["chatRooms"]["edges"][0]["node"]
    assert node["unreadCount"] == 1
    assert {m["user"]["id"]: m["seq"] for m in node["readUpTo"]} == {a.id: 2, b.id: 0}


async def test_a_blocked_user_cannot_message_the_blocker(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, c = await make_members(db, settings, 3)
    room = await room_of(http_url, a, b)
    (await send(http_url, b, room, "before the block")).ok()
    assert (await call(http_url, a, BLOCK, id=b.id)).ok()
    assert (await send(http_url, b, room, "after the block")).codes == ["FORBIDDEN"]
    assert (await call(http_url, c, BLOCK, id=a.id)).ok()
    assert (await call(http_url, a, CREATE, ids=[c.id])).codes == ["FORBIDDEN"]


# -- live delivery -------------------------------------------------------------------------


async def test_fifty_concurrent_senders_one_order_for_every_subscriber(
    http_url: str, db: Database, settings: Settings
) -> None:
    owner, *senders = await make_members(db, settings, 51)
    room = await room_of(http_url, owner, *senders)
    async with subscribed(http_url, owner) as first, subscribed(http_url, senders[0]) as second:
        watchers = [
            asyncio.ensure_future(collect(first, room, 50)),
            asyncio.ensure_future(collect(second, room, 50)),
        ]
        await asyncio.sleep(1.0)  # both subscriptions are live
        replies = await asyncio.gather(
            *(send(http_url, s, room, f"from {s.username}") for s in senders)
        )
        seen = await asyncio.wait_for(asyncio.gather(*watchers), 60)
    acknowledged = sorted(reply.ok()["sendMessage"]["seq"] for reply in replies)
    assert acknowledged == list(range(1, 51))
    assert seen[0] == seen[1] == list(range(1, 51))


async def test_a_live_message_shared_by_subscribers_keeps_viewer_fields_per_viewer(
    http_url: str, db: Database, settings: Settings, redis: Any
) -> None:
    """Live messages are decoded once per replica and public selections executed once
    (`gateway.transport.shared_events`); a field that answers per viewer is still per viewer."""
    owner, member = await make_members(db, settings, 2)
    room = await room_of(http_url, owner, member)
    private = (
        "subscription($room: ID!) { messageAdded(roomId: $room) "
        "{ seq text sender { id username emailVerified } } }"
    )

    async def first_message(session: Any) -> dict[str, Any]:
        async for result in session.subscribe(operation(private, room=room)):
            return dict(result["messageAdded"])
        raise AssertionError("the subscription ended")

    async with subscribed(http_url, owner) as mine, subscribed(http_url, member) as theirs:
        watchers = [asyncio.ensure_future(first_message(s)) for s in (mine, theirs)]
        await watching_room(redis, room, owner.id, member.id)
        (await send(http_url, member, room, "hello")).ok()
        seen_by_owner, seen_by_sender = await asyncio.wait_for(asyncio.gather(*watchers), 30)
    assert seen_by_owner["sender"]["emailVerified"] is None  # someone else's: hidden
    assert isinstance(seen_by_sender["sender"]["emailVerified"], bool)  # one's own
    for seen in (seen_by_owner, seen_by_sender):
        assert seen["text"] == "hello"
        assert seen["sender"]["id"] == member.id


async def test_reconnecting_with_after_seq_delivers_exactly_what_was_missed(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b = await make_members(db, settings, 2)
    room = await room_of(http_url, a, b)
    for n in range(5):
        (await send(http_url, a, room, f"early {n}")).ok()
    async with subscribed(http_url, b) as session:
        assert await asyncio.wait_for(collect(session, room, 3, after=0), 30) == [1, 2, 3]
    # Disconnected after seq 3; more arrive meanwhile.
    for n in range(4):
        (await send(http_url, a, room, f"late {n}")).ok()
    async with subscribed(http_url, b) as session:
        # 4..9 were missed; 10 arrives live. The replay starts once the subscription is in
        # place, so the last replayed message means the live one cannot be missed.
        seen: list[int] = []
        watcher = asyncio.ensure_future(collect(session, room, 7, after=3, into=seen))
        await wait_until(lambda: asyncio.sleep(0, 9 in seen), timeout_s=30, message="the replay")
        (await send(http_url, a, room, "live")).ok()
        assert await asyncio.wait_for(watcher, 30) == list(range(4, 11))


async def test_typing_and_presence_reach_the_other_members(
    http_url: str, db: Database, settings: Settings, redis: Any
) -> None:
    a, b, outsider = await make_members(db, settings, 3)
    room = await room_of(http_url, a, b)
    typing = "subscription($room: ID!) { typing(roomId: $room) { user { id } } }"
    presence = "subscription($room: ID!) { presence(roomId: $room) { online { id } } }"
    send_typing = "mutation($room: ID!) { sendTyping(roomId: $room) }"
    async with subscribed(http_url, a) as watcher, subscribed(http_url, b) as other:
        typed = asyncio.ensure_future(anext(watcher.subscribe(operation(typing, room=room))))
        online = watcher.subscribe(operation(presence, room=room))
        assert [u["id"] for u in (await anext(online))["presence"]["online"]] == [a.id]
        b_online = other.subscribe(operation(presence, room=room))
        first = await asyncio.wait_for(anext(b_online), 30)
        assert {u["id"] for u in first["presence"]["online"]} == {a.id, b.id}
        changed = await asyncio.wait_for(anext(online), 30)
        assert {u["id"] for u in changed["presence"]["online"]} == {a.id, b.id}
        await redis_subscribed(redis, TYPING_CHANNEL.format(room))  # only a watches typing
        assert (await call(http_url, b, send_typing, room=room)).ok() == {"sendTyping": True}
        assert (await asyncio.wait_for(typed, 30))["typing"]["user"]["id"] == b.id
    assert (await call(http_url, outsider, send_typing, room=room)).codes == ["FORBIDDEN"]


async def test_read_markers_reach_the_members_live_but_not_across_a_block(
    http_url: str, db: Database, settings: Settings, redis: Any
) -> None:
    a, b, c = await make_members(db, settings, 3)
    room = await room_of(http_url, a, b, c, name="read markers")
    seq = (await send(http_url, a, room, "did you read this?", "r-1")).ok()["sendMessage"]["seq"]
    watch = "subscription($room: ID!) { roomRead(roomId: $room) { seq user { id } } }"
    mark = "mutation($room: ID!, $seq: Int!) { markRoomRead(roomId: $room, seq: $seq) }"
    assert (await call(http_url, a, BLOCK, id=c.id)).ok()
    async with subscribed(http_url, a) as watcher:
        marks = watcher.subscribe(operation(watch, room=room))
        first = asyncio.ensure_future(anext(marks))
        await redis_subscribed(redis, READ_CHANNEL.format(room))
        # c's marker is hidden from a (a block), b's arrives.
        assert (await call(http_url, c, mark, room=room, seq=seq)).ok() == {"markRoomRead": True}
        assert (await call(http_url, b, mark, room=room, seq=seq)).ok() == {"markRoomRead": True}
        assert (await asyncio.wait_for(first, 30))["roomRead"] == {"seq": seq, "user": {"id": b.id}}
    outsider = (await make_members(db, settings, 1))[0]
    async with subscribed(http_url, outsider) as stranger:
        with pytest.raises(TransportQueryError) as refused:
            await anext(stranger.subscribe(operation(watch, room=room)))
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_slow_subscriber_is_cut_off_instead_of_stalling_the_room(
    settings: Settings,
) -> None:
    redis = make_redis(settings)
    hub = PubSubHub(redis)
    channel = f"nova:test:slow:{uuid.uuid4().hex}"
    try:
        async with hub.listen(channel, max_queue=2) as slow, hub.listen(channel) as healthy:
            await redis_subscribed(redis, channel)
            for n in range(5):
                await redis.publish(channel, str(n))
            await asyncio.wait_for(slow.gone.wait(), 10)
            assert slow.overflowed
            received = [await asyncio.wait_for(healthy.queue.get(), 10) for _ in range(5)]
            assert received == ["0", "1", "2", "3", "4"]
            assert not healthy.overflowed
    finally:
        await hub.close()
        await redis.aclose()


async def test_a_chat_shard_killed_mid_stream_loses_and_repeats_nothing(
    http_url: str, db: Database, settings: Settings, deployed: Settings
) -> None:
    owner, *senders = await make_members(db, settings, 11)
    room = await room_of(http_url, owner, *senders)
    cmids = {(s.id, n): f"{s.id}-{n}" for s in senders for n in range(6)}
    acknowledged: dict[str, int] = {}

    async def sender(member: Member) -> None:
        for n in range(6):
            reply = await send(http_url, member, room, f"{n}", cmids[(member.id, n)])
            if reply.status == 200 and not reply.errors:
                acknowledged[cmids[(member.id, n)]] = reply.data["sendMessage"]["seq"]

    async def kill() -> None:
        await asyncio.sleep(0.5)
        index = shard_of(uuid.UUID(room), deployed.chat_shards)
        ray.kill(ray.get_actor(shard_name(CHAT, index), namespace=NAMESPACE), no_restart=False)

    await asyncio.gather(kill(), *(sender(s) for s in senders))
    # Retry whatever was not acknowledged, with the same clientMessageIds.
    for (member_id, n), cmid in cmids.items():
        if cmid not in acknowledged:
            member = next(s for s in senders if s.id == member_id)
            reply = await send(http_url, member, room, f"{n}", cmid)
            acknowledged[cmid] = reply.ok()["sendMessage"]["seq"]
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT seq, client_message_id FROM chat_messages WHERE room_id = $1 ORDER BY seq",
            uuid.UUID(room),
        )
    assert [r["seq"] for r in rows] == list(range(1, 61))  # no gaps, no repeats
    assert {r["client_message_id"]: r["seq"] for r in rows} == acknowledged


async def test_leaving_a_group_ends_the_members_live_subscription(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, c = await make_members(db, settings, 3)
    room = await room_of(http_url, a, b, c, name="leavers")
    leave = "mutation($room: ID!) { leaveRoom(roomId: $room) }"
    seen: list[str] = []
    async with subscribed(http_url, b) as session:

        async def watch() -> None:
            async for result in session.subscribe(operation(ADDED, room=room)):
                seen.append(result["messageAdded"]["text"])

        watcher = asyncio.ensure_future(watch())
        await asyncio.sleep(0.5)  # subscribed on its replica
        (await send(http_url, a, room, "before")).ok()
        await wait_until(lambda: _seen(seen, "before"), timeout_s=30, message="delivery")
        assert (await call(http_url, b, leave, room=room)).ok() == {"leaveRoom": True}
        await asyncio.wait_for(watcher, 30)  # the server completed the subscription
        (await send(http_url, a, room, "after")).ok()
        (await send(http_url, c, room, "after too")).ok()
    assert seen == ["before"]


async def test_leaving_a_group_ends_the_members_typing_and_presence_and_takes_them_offline(
    http_url: str, db: Database, settings: Settings, redis: Any
) -> None:
    stayer, leaver, other = await make_members(db, settings, 3)
    room = await room_of(http_url, stayer, leaver, other, name="typing and presence")
    typing = "subscription($room: ID!) { typing(roomId: $room) { user { id } } }"
    presence = "subscription($room: ID!) { presence(roomId: $room) { online { id } } }"
    leave = "mutation($room: ID!) { leaveRoom(roomId: $room) }"
    send_typing = "mutation($room: ID!) { sendTyping(roomId: $room) }"

    async def drain(stream: Any, into: list[Any]) -> None:
        async for result in stream:  # until the server completes the subscription
            into.append(result)

    async with subscribed(http_url, leaver) as theirs, subscribed(http_url, stayer) as mine:
        typed: list[Any] = []
        presences: list[Any] = []
        watchers = [
            asyncio.ensure_future(drain(theirs.subscribe(operation(typing, room=room)), typed)),
            asyncio.ensure_future(
                drain(theirs.subscribe(operation(presence, room=room)), presences)
            ),
        ]
        await watching_room(redis, room, leaver.id)
        await redis_subscribed(redis, TYPING_CHANNEL.format(room))
        online = mine.subscribe(operation(presence, room=room))
        seen = {u["id"] for u in (await asyncio.wait_for(anext(online), 30))["presence"]["online"]}
        assert seen == {stayer.id, leaver.id}

        assert (await call(http_url, leaver, leave, room=room)).ok() == {"leaveRoom": True}
        # Both of the former member's streams are completed by the server...
        done, _ = await asyncio.wait(watchers, timeout=30)
        assert len(done) == 2, "the former member's typing or presence went on after leaveRoom"
        # ...and the room no longer shows them online.
        for _ in range(5):
            update = await asyncio.wait_for(anext(online), 30)
            seen = {u["id"] for u in update["presence"]["online"]}
            if leaver.id not in seen:
                break
        assert seen == {stayer.id}
        assert (await call(http_url, other, send_typing, room=room)).ok()
    assert typed == []
    assert (await call(http_url, leaver, send_typing, room=room)).codes == ["FORBIDDEN"]


async def _seen(seen: list[str], text: str) -> bool:
    return text in seen


async def test_a_subscriber_that_cannot_keep_up_is_closed_with_4508(
    http_url: str, db: Database, settings: Settings
) -> None:
    """A burst far beyond the subscriber's queue (published where the room's shard would)
    overflows it: the gateway closes that WebSocket with 4508, and the client may resume
    with afterSeq."""
    import json

    import websockets

    from actors.chat_shard import CHAT_CHANNEL

    a, b = await make_members(db, settings, 2)
    room = await room_of(http_url, a, b)
    url = http_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {b.token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_ack"
        subscribe = {"query": ADDED, "variables": {"room": room}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        await asyncio.sleep(1.0)  # subscribed on its replica
        burst = 3 * settings.chat_subscriber_queue
        redis = make_redis(settings)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for seq in range(1, burst + 1):
                    message = {
                        "id": str(uuid.uuid4()), "room_id": room, "seq": seq,
                        "sender_id": a.id, "text": "x" * 500, "client_message_id": f"c{seq}",
                        "created_at": "2026-11-23T12:00:00+00:00",
                    }  # fmt: skip
                    pipe.publish(CHAT_CHANNEL.format(room), json.dumps(message))
                await pipe.execute()
        finally:
            await redis.aclose()
        received, close = await _read_until_closed(ws)
    assert close is not None
    assert close.code == 4508
    assert received < burst


async def _read_until_closed(ws: Any) -> tuple[int, Any]:
    """Messages read before the server closed the socket, and its close frame."""
    import websockets

    received = 0
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
            received += 1
    except websockets.ConnectionClosed as closed:
        return received, closed.rcvd
