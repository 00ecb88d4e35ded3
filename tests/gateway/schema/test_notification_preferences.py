"""Notification preferences end to end: the defaults, a round trip, refused input that
changes nothing, and the notifications consumer honouring kinds switched off in the app,
muted users and muted rooms."""

from __future__ import annotations

import uuid

import pytest

from deployments.settings import Settings
from storage.db import Database
from tests.support.chat import room_of, send
from tests.support.notifications import (
    COMMENT,
    MUTE_ROOM,
    MUTE_USER,
    UNMUTE_ROOM,
    UNMUTE_USER,
    UPDATE,
    channels,
    consumed,
    inbox_kinds,
    preferences,
)
from tests.support.social import FOLLOW, LIKE, call, create_post, make_members

pytestmark = pytest.mark.stack

DEFAULTS = {
    "FOLLOW": (True, True),
    "LIKE": (True, False),
    "COMMENT": (True, True),
    "SHARE": (True, False),
    "MENTION": (True, True),
    "MESSAGE": (True, True),
}


async def test_preferences_round_trip(http_url: str, db: Database, settings: Settings) -> None:
    me, other = await make_members(db, settings, 2)
    found = await preferences(http_url, me)
    assert channels(found) == DEFAULTS
    assert found["emailDigest"] is True
    assert found["mutedUsers"] == []
    assert found["mutedRooms"] == []

    kinds = [
        {"kind": "LIKE", "inApp": False, "email": True},
        {"kind": "MESSAGE", "inApp": True, "email": False},
    ]
    reply = await call(http_url, me, UPDATE, input={"kinds": kinds, "emailDigest": False})
    changed = reply.ok()["updateNotificationPreferences"]
    expected = {**DEFAULTS, "LIKE": (False, True), "MESSAGE": (True, False)}
    assert channels(changed) == expected
    assert changed["emailDigest"] is False

    # Omitted kinds and an omitted switch are kept.
    reply = await call(
        http_url, me, UPDATE, input={"kinds": [{"kind": "SHARE", "inApp": False, "email": False}]}
    )
    again = reply.ok()["updateNotificationPreferences"]
    assert channels(again) == {**expected, "SHARE": (False, False)}
    assert again["emailDigest"] is False

    room = await room_of(http_url, me, other)
    (await call(http_url, me, MUTE_USER, id=other.id)).ok()
    muted = (await call(http_url, me, MUTE_ROOM, id=room)).ok()["muteRoom"]
    assert muted["mutedUsers"] == [{"id": other.id}]
    assert muted["mutedRooms"] == [{"id": room}]
    assert (await preferences(http_url, me))["mutedUsers"] == [{"id": other.id}]
    # Muting twice is harmless.
    (await call(http_url, me, MUTE_USER, id=other.id)).ok()
    (await call(http_url, me, UNMUTE_USER, id=other.id)).ok()
    unmuted = (await call(http_url, me, UNMUTE_ROOM, id=room)).ok()["unmuteRoom"]
    assert unmuted["mutedUsers"] == []
    assert unmuted["mutedRooms"] == []
    # Someone else's preferences are their own.
    assert channels(await preferences(http_url, other)) == DEFAULTS


async def test_refused_input_changes_nothing(
    http_url: str, db: Database, settings: Settings
) -> None:
    me, other, outsider = await make_members(db, settings, 3)
    room = await room_of(http_url, other, outsider)
    before = await preferences(http_url, me)

    twice = [
        {"kind": "LIKE", "inApp": False, "email": False},
        {"kind": "LIKE", "inApp": True, "email": False},
    ]
    assert (await call(http_url, me, UPDATE, input={"kinds": twice})).codes == ["BAD_USER_INPUT"]
    unknown = [{"kind": "POKE", "inApp": False, "email": False}]
    reply = await call(http_url, me, UPDATE, input={"kinds": unknown})
    assert reply.codes == ["BAD_USER_INPUT"]  # variables that do not coerce to the enum
    assert (await call(http_url, me, MUTE_USER, id=me.id)).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, me, MUTE_USER, id="nope")).codes == ["BAD_USER_INPUT"]
    ghost = str(uuid.uuid4())
    assert (await call(http_url, me, MUTE_USER, id=ghost)).codes == ["NOT_FOUND"]
    assert (await call(http_url, me, MUTE_ROOM, id=room)).codes == ["NOT_FOUND"]
    assert (await call(http_url, me, MUTE_ROOM, id=str(uuid.uuid4()))).codes == ["NOT_FOUND"]
    assert (await call(http_url, None, UPDATE, input={})).codes == ["UNAUTHENTICATED"]

    assert await preferences(http_url, me) == before


async def test_a_kind_off_in_the_app_writes_nothing_while_others_still_notify(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, fan = await make_members(db, settings, 2)
    off = [{"kind": "LIKE", "inApp": False, "email": False}]
    (await call(http_url, author, UPDATE, input={"kinds": off})).ok()
    post = await create_post(http_url, author, "like it or comment")
    (await call(http_url, fan, LIKE, id=post["id"])).ok()
    (await call(http_url, fan, COMMENT, id=post["id"])).ok()
    await consumed(db, "social.like.created", post_id=post["id"], user_id=fan.id)
    await consumed(db, "social.comment.created", post_id=post["id"], user_id=fan.id)
    assert await inbox_kinds(http_url, author) == [("COMMENT", fan.id)]


async def test_a_muted_users_acts_notify_nothing(
    http_url: str, db: Database, settings: Settings
) -> None:
    me, muted, friend = await make_members(db, settings, 3)
    (await call(http_url, me, MUTE_USER, id=muted.id)).ok()
    (await call(http_url, muted, FOLLOW, id=me.id)).ok()
    (await call(http_url, friend, FOLLOW, id=me.id)).ok()
    await consumed(db, "graph.follow.created", follower_id=muted.id, followee_id=me.id)
    await consumed(db, "graph.follow.created", follower_id=friend.id, followee_id=me.id)
    assert await inbox_kinds(http_url, me) == [("FOLLOW", friend.id)]


async def test_a_muted_rooms_messages_notify_nothing(
    http_url: str, db: Database, settings: Settings
) -> None:
    sender, muting, listening = await make_members(db, settings, 3)
    room = await room_of(http_url, sender, muting, listening)
    (await call(http_url, muting, MUTE_ROOM, id=room)).ok()
    for text in ("one", "two"):
        (await send(http_url, sender, room, text)).ok()
    await consumed(db, "chat.message.sent", 2, room_id=room, sender_id=sender.id)
    assert await inbox_kinds(http_url, listening) == [("MESSAGE", sender.id)]
    assert await inbox_kinds(http_url, muting) == []
