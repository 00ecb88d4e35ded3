"""Messages with pictures: attached once, shown to the room through signed, expiring URLs,
never through public ones; media that cannot be attached refuses that send alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from deployments.settings import Settings
from gateway.services.media import Media
from storage.db import Database
from storage.media_store import DirectoryStore
from storage.redis_client import make_redis
from tests.conftest import wait_until
from tests.support.chat import operation, room_of, subscribed
from tests.support.media import sweep, uploaded_image
from tests.support.social import call, make_members

pytestmark = pytest.mark.stack

SEND = """
mutation($room: ID!, $text: String!, $cmid: String!, $media: [ID!]) {
  sendMessage(input: {roomId: $room, text: $text, clientMessageId: $cmid, mediaIds: $media}) {
    id seq text media { id status width height url variants { name url } }
  }
}
"""
HISTORY = """
query($room: ID!) {
  messages(roomId: $room, last: 10) { edges { node { seq text media { id url } } } }
}
"""
ADDED = """
subscription($room: ID!) { messageAdded(roomId: $room) { seq media { id url } } }
"""
CREATE_POST = """
mutation($media: [ID!]) { createPost(input: {text: "", mediaIds: $media}) {
  id media { id url } } }
"""


async def send(http_url: str, member: Any, room: str, media: list[str], **extra: Any) -> Any:
    cmid = extra.pop("cmid", None) or uuid.uuid4().hex
    text = extra.pop("text", "")
    return await call(http_url, member, SEND, room=room, text=text, cmid=cmid, media=media)


async def test_a_message_carries_pictures_that_only_signed_urls_fetch(
    http_url: str, db: Database, deployed: Settings
) -> None:
    sender, reader = await make_members(db, deployed, 2)
    room = await room_of(http_url, sender, reader)
    first = await uploaded_image(http_url, sender, 64, 48)
    second = await uploaded_image(http_url, sender, 48, 64)

    async with subscribed(http_url, reader) as session:
        stream = session.subscribe(operation(ADDED, room=room))
        live = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)
        sent = (await send(http_url, sender, room, [first, second])).ok()["sendMessage"]
        heard = (await asyncio.wait_for(live, 30))["messageAdded"]
    assert sent["text"] == ""
    assert [m["id"] for m in sent["media"]] == [first, second]
    assert [m["id"] for m in heard["media"]] == [first, second]
    history = (await call(http_url, reader, HISTORY, room=room)).ok()["messages"]["edges"]
    shown = history[-1]["node"]["media"]
    assert [m["id"] for m in shown] == [first, second]

    url = shown[0]["url"]
    assert url.startswith(f"{deployed.public_url}/media/signed/")
    public = f"{deployed.public_url}/media/{first}/large.webp"
    async with httpx.AsyncClient(timeout=30) as client:
        fetched = await client.get(url)
        unsigned = await client.get(public)
        tampered = await client.get(url.replace(f"/{first}/", f"/{second}/"))
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "image/webp"
    cache = fetched.headers["cache-control"]
    assert cache.startswith("private, max-age=")
    assert 0 < int(cache.rsplit("=", 1)[1]) <= 2 * deployed.media_url_ttl_s
    assert unsigned.status_code == 404  # private media has no public URL
    assert tampered.status_code == 403  # a signature is for one media alone


async def test_a_signed_url_stops_working_when_it_expires(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (owner,) = await make_members(db, deployed, 1)
    media_id = await uploaded_image(http_url, owner)
    redis = make_redis(deployed)
    try:
        signer = Media(db, DirectoryStore(deployed.media_store), redis, deployed)
        past = int(time.time()) - 1
        soon = int(time.time()) + 60
        base = f"{deployed.public_url}/media/signed"
        expired = f"{base}/{past}/{signer.download_signature(uuid.UUID(media_id), past)}"
        current = f"{base}/{soon}/{signer.download_signature(uuid.UUID(media_id), soon)}"
        stretched = f"{base}/{soon + 3600}/{signer.download_signature(uuid.UUID(media_id), soon)}"
    finally:
        await redis.aclose()
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(f"{current}/{media_id}/small.jpeg")).status_code == 200
        gone = await client.get(f"{expired}/{media_id}/small.jpeg")
        assert (gone.status_code, gone.json()["errors"][0]["extensions"]["code"]) == (
            403,
            "FORBIDDEN",
        )
        assert (await client.get(f"{stretched}/{media_id}/small.jpeg")).status_code == 403
        assert (await client.get(f"{current}/{media_id}/original")).status_code == 404


async def test_a_posts_pictures_are_public_and_cacheable(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (author,) = await make_members(db, deployed, 1)
    media_id = await uploaded_image(http_url, author)
    posted = (await call(http_url, author, CREATE_POST, media=[media_id])).ok()["createPost"]
    url = posted["media"][0]["url"]
    assert url.startswith(f"{deployed.public_url}/media/{media_id}/")  # unsigned
    assert url.endswith(".webp")
    async with httpx.AsyncClient(timeout=30) as client:
        fetched = await client.get(url)
    assert fetched.status_code == 200
    assert fetched.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_media_that_cannot_be_attached_refuses_the_send_alone(
    http_url: str, db: Database, deployed: Settings
) -> None:
    sender, other = await make_members(db, deployed, 2)
    room = await room_of(http_url, sender, other)
    mine = await uploaded_image(http_url, sender, ready=False)
    theirs = await uploaded_image(http_url, other, ready=False)
    many = [await uploaded_image(http_url, sender, ready=False) for _ in range(5)]
    for media in ([theirs], [mine, mine], many, [str(uuid.uuid4())]):
        reply = await send(http_url, sender, room, media)
        assert reply.codes == ["BAD_USER_INPUT"], (media, reply.body)
    assert (await send(http_url, sender, room, [])).codes == ["BAD_USER_INPUT"]  # no text

    # A retry of the same send answers the original; the media is attached once.
    first = (await send(http_url, sender, room, [mine], cmid="one")).ok()["sendMessage"]
    retry = (await send(http_url, sender, room, [mine], cmid="one")).ok()["sendMessage"]
    assert (retry["id"], retry["seq"]) == (first["id"], first["seq"])
    again = await send(http_url, sender, room, [mine], cmid="two")
    assert again.codes == ["BAD_USER_INPUT"]
    posted = await call(http_url, sender, CREATE_POST, media=[mine])
    assert posted.codes == ["BAD_USER_INPUT"]  # a message's media is not a post's too

    # Sends racing into one group commit: the one whose media is taken is refused alone.
    extra = await uploaded_image(http_url, sender, ready=False)
    racing = await asyncio.gather(
        send(http_url, sender, room, [extra], text="a"),
        send(http_url, sender, room, [extra], text="b"),
        send(http_url, sender, room, [], text="plain"),
    )
    assert sorted(bool(r.errors) for r in racing[:2]) == [False, True]
    assert not racing[2].errors
    seqs = [r.ok()["sendMessage"]["seq"] for r in racing if not r.errors]
    assert sorted(seqs) == [min(seqs), min(seqs) + 1]  # no gap in the room's seqs


DELETE = """
mutation($room: ID!, $id: ID!) { deleteMessage(roomId: $room, id: $id) {
  id seq text deleted media { id } } }
"""
DELETED = "subscription($room: ID!) { messageDeleted(roomId: $room) { id seq deleted text } }"
HISTORY_ALL = """
query($room: ID!) {
  messages(roomId: $room, last: 10) { edges { node { id seq text deleted media { id } } } }
}
"""


async def test_a_deleted_message_becomes_a_tombstone_and_its_media_goes_later(
    http_url: str, db: Database, deployed: Settings
) -> None:
    sender, reader = await make_members(db, deployed, 2)
    room = await room_of(http_url, sender, reader)
    picture = await uploaded_image(http_url, sender)
    sent = (await send(http_url, sender, room, [picture], text="oops")).ok()["sendMessage"]
    after = (await send(http_url, sender, room, [], text="still here")).ok()["sendMessage"]

    # Only its sender may delete it.
    refused = await call(http_url, reader, DELETE, room=room, id=sent["id"])
    assert refused.codes == ["NOT_FOUND"]
    async with subscribed(http_url, reader) as session:
        stream = session.subscribe(operation(DELETED, room=room))
        heard = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)
        gone = (await call(http_url, sender, DELETE, room=room, id=sent["id"])).ok()
        notice = (await asyncio.wait_for(heard, 30))["messageDeleted"]
    tombstone = gone["deleteMessage"]
    assert (tombstone["text"], tombstone["deleted"], tombstone["media"]) == ("", True, [])
    assert (notice["id"], notice["deleted"], notice["text"]) == (sent["id"], True, "")
    again = (await call(http_url, sender, DELETE, room=room, id=sent["id"])).ok()
    assert again["deleteMessage"]["seq"] == sent["seq"]  # deleting twice answers the same

    history = (await call(http_url, reader, HISTORY_ALL, room=room)).ok()["messages"]["edges"]
    shown = {edge["node"]["id"]: edge["node"] for edge in history}
    assert shown[sent["id"]] == {
        "id": sent["id"],
        "seq": sent["seq"],
        "text": "",
        "deleted": True,
        "media": [],
    }
    assert shown[after["id"]]["text"] == "still here"  # the sequence keeps no gap
    async with db.connection() as conn:
        text = await conn.fetchval(
            "SELECT text FROM chat_messages WHERE id = $1", uuid.UUID(sent["id"])
        )
        assert text == ""  # erased, not hidden
        await conn.execute(
            "UPDATE chat_messages SET deleted_at = now() - interval '8 days' WHERE id = $1",
            uuid.UUID(sent["id"]),
        )
    await sweep(db, deployed)
    async with db.connection() as conn:
        left = await conn.fetchval("SELECT count(*) FROM media WHERE id = $1", uuid.UUID(picture))
    assert left == 0


DELETE_POST = "mutation($id: ID!) { deletePost(id: $id) }"


async def test_a_deleted_posts_pictures_stop_being_served(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (author,) = await make_members(db, deployed, 1)
    media_id = await uploaded_image(http_url, author)
    posted = (await call(http_url, author, CREATE_POST, media=[media_id])).ok()["createPost"]
    url = posted["media"][0]["url"]
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(url)).status_code == 200
        assert (await call(http_url, author, DELETE_POST, id=posted["id"])).ok()

        async def withdrawn() -> bool:
            return (await client.get(url)).status_code == 404

        await wait_until(withdrawn, timeout_s=10, message="the picture withdrawn")
    async with db.connection() as conn:  # kept for the grace period, in case of a restore
        assert await conn.fetchval("SELECT count(*) FROM media WHERE id = $1", uuid.UUID(media_id))


MODERATE = """
mutation($id: ID!, $action: ModerationAction!) {
  moderate(input: {targetType: POST, targetId: $id, action: $action, note: "t"}) { state }
}
"""


async def test_a_post_removed_by_a_moderator_withholds_its_pictures_until_restored(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (author,) = await make_members(db, deployed, 1)
    (moderator,) = await make_members(db, deployed, 1, prefix="mod", roles=("user", "moderator"))
    media_id = await uploaded_image(http_url, author)
    posted = (await call(http_url, author, CREATE_POST, media=[media_id])).ok()["createPost"]
    url = posted["media"][0]["url"]
    async with httpx.AsyncClient(timeout=30) as client:

        async def served(status: int) -> bool:
            return (await client.get(url)).status_code == status

        assert (await call(http_url, moderator, MODERATE, id=posted["id"], action="REMOVE")).ok()
        await wait_until(lambda: served(404), timeout_s=10, message="the picture withheld")
        assert (await call(http_url, moderator, MODERATE, id=posted["id"], action="RESTORE")).ok()
        await wait_until(lambda: served(200), timeout_s=10, message="the picture back")
