"""Per-replica caches of posts, blocks and followed celebrities, across the test stack's two
gateway replicas: a change made through either is seen through both within 50 ms.

Each test first reads through both replicas until each has the old answer cached, then
changes it through the API, waits 50 ms and reads through both again. A replica that
missed the invalidation would keep serving its copy for the cache's TTL (a minute).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from deployments.settings import Settings
from storage.db import Database
from tests.conftest import wait_until
from tests.support.graphql import Reply
from tests.support.social import (
    BLOCK,
    FOLLOW,
    POST,
    Member,
    call,
    create_post,
    make_members,
)

pytestmark = pytest.mark.stack

FEED = "{ feed(first: 50) { edges { node { id } } } }"


async def both_replicas_answer(
    expected: Any,
    http_url: str,
    member: Member,
    query: str,
    seen: Callable[[Reply], Any],
    **variables: Any,
) -> None:
    """Over enough requests to reach both replicas, each answers `expected` (as `seen`
    reads a reply), and nothing else."""
    answers: dict[str, set[Any]] = {}
    for _ in range(24):
        reply = await call(http_url, member, query, **variables)
        answers.setdefault(reply.headers["x-nova-replica"], set()).add(seen(reply))
    assert len(answers) == 2, answers
    assert all(seen_here == {expected} for seen_here in answers.values()), answers


async def post_reads(expected: str | None, http_url: str, reader: Member, post_id: str) -> None:
    """Through both replicas, the reader sees the post with `expected` text (None: not at
    all)."""
    await both_replicas_answer(expected, http_url, reader, POST, post_text, id=post_id)


async def feed_reads(expected: frozenset[str], http_url: str, reader: Member) -> None:
    """Through both replicas, the reader's feed holds exactly the posts `expected`."""
    await both_replicas_answer(expected, http_url, reader, FEED, feed_ids)


async def a_post_both_replicas_cached(
    http_url: str, db: Database, settings: Settings, text: str
) -> tuple[Member, Member, dict[str, Any]]:
    """An author, a reader and the author's new post, which both replicas have shown the
    reader (and so cached)."""
    author, reader = await make_members(db, settings, 2)
    post = await create_post(http_url, author, text)
    await post_reads(text, http_url, reader, post["id"])
    return author, reader, post


def post_text(reply: Reply) -> str | None:
    """The post's text; None when it is gone or hidden from the reader."""
    post = reply.ok()["post"]
    return None if post is None else str(post["text"])


def feed_ids(reply: Reply) -> frozenset[str]:
    return frozenset(edge["node"]["id"] for edge in reply.ok()["feed"]["edges"])


async def test_an_edited_then_deleted_post_changes_on_both_replicas_within_50ms(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, reader, post = await a_post_both_replicas_cached(http_url, db, settings, "first words")

    edit = "mutation($id: ID!, $text: String!) { updatePost(id: $id, text: $text) { text } }"
    (await call(http_url, author, edit, id=post["id"], text="second words")).ok()
    await asyncio.sleep(0.05)
    await post_reads("second words", http_url, reader, post["id"])

    delete = "mutation($id: ID!) { deletePost(id: $id) }"
    (await call(http_url, author, delete, id=post["id"])).ok()
    await asyncio.sleep(0.05)
    await post_reads(None, http_url, reader, post["id"])


async def test_a_block_hides_posts_on_both_replicas_within_50ms(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, reader, post = await a_post_both_replicas_cached(http_url, db, settings, "soon hidden")

    (await call(http_url, author, BLOCK, id=reader.id)).ok()
    await asyncio.sleep(0.05)
    await post_reads(None, http_url, reader, post["id"])

    unblock = "mutation($id: ID!) { unblockUser(userId: $id) }"
    (await call(http_url, author, unblock, id=reader.id)).ok()
    await asyncio.sleep(0.05)
    await post_reads("soon hidden", http_url, reader, post["id"])


async def test_an_author_crossing_the_fanout_threshold_is_merged_on_both_replicas(
    http_url: str, db: Database, settings: Settings, deployed: Settings
) -> None:
    """The test threshold is 5 followers: the sixth makes an author a celebrity, whose
    posts are not fanned out but merged into followers' feeds at read time."""
    assert deployed.fanout_max_followers == 5
    author, reader, *fans = await make_members(db, settings, 7)
    for member in [reader, *fans[:3]]:  # 4 followers: fanned out
        (await call(http_url, member, FOLLOW, id=author.id)).ok()
    # Both replicas now hold "follows no celebrity" for the reader.
    await feed_reads(frozenset(), http_url, reader)

    for fan in fans[3:]:  # the fifth and sixth follower: now above the threshold
        (await call(http_url, fan, FOLLOW, id=author.id)).ok()
    post = await create_post(http_url, author, "merged at read time")
    await asyncio.sleep(0.05)
    await feed_reads(frozenset({post["id"]}), http_url, reader)


async def test_following_a_celebrity_merges_their_new_posts_on_both_replicas_at_once(
    http_url: str, db: Database, settings: Settings
) -> None:
    celebrity, reader, *fans = await make_members(db, settings, 8)
    for fan in fans:  # 6 followers: above the test threshold
        (await call(http_url, fan, FOLLOW, id=celebrity.id)).ok()
    old = await create_post(http_url, celebrity, "before the follow")
    await feed_reads(frozenset(), http_url, reader)

    (await call(http_url, reader, FOLLOW, id=celebrity.id)).ok()

    # Following backfills recent posts into the timeline; once that is done, a new post
    # can only reach the reader's feed by being merged at read time.
    async def backfilled() -> bool:
        reply = await call(http_url, reader, FEED)
        return old["id"] in feed_ids(reply)

    await wait_until(backfilled, timeout_s=30, interval_s=0.1, message="backfill")
    new = await create_post(http_url, celebrity, "after the follow")
    await asyncio.sleep(0.05)
    await feed_reads(frozenset({old["id"], new["id"]}), http_url, reader)
