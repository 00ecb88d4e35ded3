"""Stories: shown to followers (unseen authors first), viewed once per viewer, listed for
their author, gone from every read the moment they expire, hidden across blocks, and
refused with a code for media that cannot be used."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.settings import Settings
from storage.db import Database
from tests.support.media import png_claiming, processed, sweep, uploaded_image
from tests.support.social import BLOCK, FOLLOW, Member, call, make_members

pytestmark = pytest.mark.stack

CREATE = """
mutation($media: ID!, $text: String!) {
  createStory(input: {mediaId: $media, text: $text}) {
    id text createdAt expiresAt seen author { id } media { id url }
  }
}
"""
FEED = """
query($first: Int) {
  storyFeed(first: $first) {
    hasUnseen author { id } stories { id text seen viewCount media { id url } }
  }
}
"""
VIEW = "mutation($id: ID!) { viewStory(id: $id) { id seen viewCount } }"
STORY = "query($id: ID!) { story(id: $id) { id viewCount } }"
MINE = "query { myStories { id viewCount } }"
VIEWERS = """
query($id: ID!, $first: Int, $after: String) {
  storyViewers(storyId: $id, first: $first, after: $after) {
    edges { cursor node { viewedAt user { id } } } pageInfo { hasNextPage endCursor }
  }
}
"""
DELETE = "mutation($id: ID!) { deleteStory(id: $id) }"
CREATE_POST = 'mutation($m: [ID!]) { createPost(input: {text: "", mediaIds: $m}) { id } }'


async def story_of(http_url: str, author: Member, text: str = "hello") -> dict[str, Any]:
    media = await uploaded_image(http_url, author)
    story: dict[str, Any] = (await call(http_url, author, CREATE, media=media, text=text)).ok()[
        "createStory"
    ]
    return story


async def feed(http_url: str, member: Member) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await call(http_url, member, FEED)).ok()["storyFeed"]
    return entries


async def viewer_ids(http_url: str, author: Member, story: str) -> list[str]:
    reply = (await call(http_url, author, VIEWERS, id=story)).ok()["storyViewers"]
    return [edge["node"]["user"]["id"] for edge in reply["edges"]]


async def test_followers_see_a_story_and_its_author_sees_who_viewed_it(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, first, second, stranger = await make_members(db, deployed, 4)
    for follower in (first, second):
        assert (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    story = await story_of(http_url, author, "at the beach")
    assert story["author"]["id"] == author.id
    assert story["media"]["url"].startswith(f"{deployed.public_url}/media/signed/")

    (entry,) = await feed(http_url, first)
    assert (entry["author"]["id"], entry["hasUnseen"]) == (author.id, True)
    assert [(s["id"], s["text"], s["seen"]) for s in entry["stories"]] == [
        (story["id"], "at the beach", False)
    ]
    assert entry["stories"][0]["viewCount"] is None  # the author's to know
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(entry["stories"][0]["media"]["url"])).status_code == 200
    assert await feed(http_url, stranger) == []
    assert (await call(http_url, stranger, VIEW, id=story["id"])).codes == ["NOT_FOUND"]
    assert (await call(http_url, stranger, STORY, id=story["id"])).ok()["story"] is None

    for _ in range(2):  # once per viewer, however often they look
        viewed = (await call(http_url, first, VIEW, id=story["id"])).ok()["viewStory"]
        assert viewed["seen"] is True
    await asyncio.sleep(0.01)
    assert (await call(http_url, second, VIEW, id=story["id"])).ok()
    assert (await call(http_url, author, VIEW, id=story["id"])).ok()  # not counted

    assert await viewer_ids(http_url, author, story["id"]) == [second.id, first.id]
    (mine,) = (await call(http_url, author, MINE)).ok()["myStories"]
    assert mine == {"id": story["id"], "viewCount": 2}
    (entry,) = await feed(http_url, first)
    assert (entry["hasUnseen"], entry["stories"][0]["seen"]) == (False, True)
    assert (await call(http_url, first, VIEWERS, id=story["id"])).codes == ["NOT_FOUND"]

    page = (await call(http_url, author, VIEWERS, id=story["id"], first=1)).ok()["storyViewers"]
    assert [e["node"]["user"]["id"] for e in page["edges"]] == [second.id]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await call(
        http_url, author, VIEWERS, id=story["id"], first=1, after=page["pageInfo"]["endCursor"]
    )
    rest_page = rest.ok()["storyViewers"]
    assert [e["node"]["user"]["id"] for e in rest_page["edges"]] == [first.id]
    assert rest_page["pageInfo"]["hasNextPage"] is False


async def test_authors_with_unseen_stories_come_first(
    http_url: str, db: Database, deployed: Settings
) -> None:
    reader, older, newer = await make_members(db, deployed, 3)
    for author in (older, newer):
        assert (await call(http_url, reader, FOLLOW, id=author.id)).ok()
    first_old = await story_of(http_url, older, "one")
    second_old = await story_of(http_url, older, "two")
    new = await story_of(http_url, newer)

    entries = await feed(http_url, reader)
    assert [e["author"]["id"] for e in entries] == [newer.id, older.id]  # newest first
    assert [s["id"] for s in entries[1]["stories"]] == [first_old["id"], second_old["id"]]

    assert (await call(http_url, reader, VIEW, id=new["id"])).ok()
    entries = await feed(http_url, reader)
    assert [(e["author"]["id"], e["hasUnseen"]) for e in entries] == [
        (older.id, True),
        (newer.id, False),
    ]
    # One of two seen: the author still has unseen stories.
    assert (await call(http_url, reader, VIEW, id=first_old["id"])).ok()
    assert (await feed(http_url, reader))[0]["hasUnseen"] is True


async def test_a_story_disappears_from_every_read_the_moment_it_expires(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, follower = await make_members(db, deployed, 2)
    assert (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    story = await story_of(http_url, author)
    story_id = uuid.UUID(story["id"])
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE stories SET expires_at = now() + interval '2 seconds' WHERE id = $1",
            story_id,
        )
    (entry,) = await feed(http_url, follower)
    url = entry["stories"][0]["media"]["url"]  # signed until the story's end, no later
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(url)).status_code == 200
        assert (await call(http_url, follower, VIEW, id=story["id"])).ok()

        await asyncio.sleep(2.2)
        assert await feed(http_url, follower) == []
        assert (await call(http_url, follower, STORY, id=story["id"])).ok()["story"] is None
        assert (await call(http_url, follower, VIEW, id=story["id"])).codes == ["NOT_FOUND"]
        assert (await call(http_url, author, VIEWERS, id=story["id"])).codes == ["NOT_FOUND"]
        assert (await call(http_url, author, MINE)).ok()["myStories"] == []
        assert (await client.get(url)).status_code == 403
    async with db.connection() as conn:  # no sweep ran: the reads alone hid it
        assert await conn.fetchval("SELECT count(*) FROM stories WHERE id = $1", story_id) == 1


async def test_a_block_hides_stories_and_viewers_both_ways(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, viewer, other = await make_members(db, deployed, 3)
    for follower in (viewer, other):
        assert (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    story = await story_of(http_url, author)
    for follower in (viewer, other):
        assert (await call(http_url, follower, VIEW, id=story["id"])).ok()

    assert (await call(http_url, viewer, BLOCK, id=author.id)).ok()
    assert await viewer_ids(http_url, author, story["id"]) == [other.id]
    assert await feed(http_url, viewer) == []
    assert (await call(http_url, viewer, VIEW, id=story["id"])).codes == ["NOT_FOUND"]


async def test_a_story_needs_a_usable_media_and_short_text(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, other = await make_members(db, deployed, 2)
    theirs = await uploaded_image(http_url, other, ready=False)
    posted = await uploaded_image(http_url, author, ready=False)
    assert (await call(http_url, author, CREATE_POST, m=[posted])).ok()
    failed = await processed(http_url, author, png_claiming(20_000, 20_000), "image/png")
    fine = await uploaded_image(http_url, author, ready=False)
    for media, text in (
        (theirs, ""),
        (posted, ""),  # a post's already
        (failed["id"], ""),
        (str(uuid.uuid4()), ""),
        (fine, "x" * 501),
    ):
        reply = await call(http_url, author, CREATE, media=media, text=text)
        assert reply.codes == ["BAD_USER_INPUT"], (media, reply.body)
    assert (await call(http_url, author, CREATE, media="not-an-id", text="")).codes == [
        "BAD_USER_INPUT"
    ]
    assert (await call(http_url, author, MINE)).ok()["myStories"] == []

    story = (await call(http_url, author, CREATE, media=fine, text="ok")).ok()["createStory"]
    assert (await call(http_url, other, DELETE, id=story["id"])).codes == ["NOT_FOUND"]
    assert (await call(http_url, author, DELETE, id=story["id"])).ok()["deleteStory"] is True
    assert (await call(http_url, author, MINE)).ok()["myStories"] == []


async def test_an_ended_story_is_swept_with_its_views_and_media(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, follower = await make_members(db, deployed, 2)
    assert (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    story = await story_of(http_url, author)
    assert (await call(http_url, follower, VIEW, id=story["id"])).ok()
    story_id, media_id = uuid.UUID(story["id"]), uuid.UUID(story["media"]["id"])
    async with db.connection() as conn:
        await conn.execute(
            """
            UPDATE stories SET created_at = now() - interval '26 hours',
                               expires_at = now() - interval '2 hours'
            WHERE id = $1
            """,
            story_id,
        )
    await sweep(db, deployed)
    async with db.connection() as conn:
        for table, column, key in (
            ("stories", "id", story_id),
            ("story_views", "story_id", story_id),
            ("media", "id", media_id),
        ):
            count = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", key)
            assert count == 0, table
    assert not (Path(deployed.media_store) / str(media_id)).exists()
