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

from storage.config import Settings
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


async def through_both_replicas(
    http_url: str, member: Member, query: str, seen: Callable[[Reply], Any], **variables: Any
) -> dict[str, set[Any]]:
    """What each replica answers, over enough requests to reach both."""
    answers: dict[str, set[Any]] = {}
    for _ in range(24):
        reply = await call(http_url, member, query, **variables)
        answers.setdefault(reply.headers["x-nova-replica"], set()).add(seen(reply))
    assert len(answers) == 2, answers
    return answers


def post_text(reply: Reply) -> str | None:
    """The post's text; None when it is gone or hidden from the reader."""
    post = reply.ok()["post"]
    return None if post is None else str(post["text"])


def feed_ids(reply: Reply) -> frozenset[str]:
    return frozenset(edge["node"]["id"] for edge in reply.ok()["feed"]["edges"])


async def test_an_edited_then_deleted_post_changes_on_both_replicas_within_50ms(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, reader = await make_members(db, settings, 2)
    post = await create_post(http_url, author, "first words")
    before = await through_both_replicas(http_url, reader, POST, post_text, id=post["id"])
    assert all(texts == {"first words"} for texts in before.values()), before

    edit = "mutation($id: ID!, $text: String!) { updatePost(id: $id, text: $text) { text } }"
    (await call(http_url, author, edit, id=post["id"], text="second words")).ok()
    await asyncio.sleep(0.05)
    edited = await through_both_replicas(http_url, reader, POST, post_text, id=post["id"])
    assert all(texts == {"second words"} for texts in edited.values()), edited

    delete = "mutation($id: ID!) { deletePost(id: $id) }"
    (await call(http_url, author, delete, id=post["id"])).ok()
    await asyncio.sleep(0.05)
    deleted = await through_both_replicas(http_url, reader, POST, post_text, id=post["id"])
    assert all(texts == {None} for texts in deleted.values()), deleted


async def test_a_block_hides_posts_on_both_replicas_within_50ms(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, reader = await make_members(db, settings, 2)
    post = await create_post(http_url, author, "soon hidden")
    before = await through_both_replicas(http_url, reader, POST, post_text, id=post["id"])
    assert all(texts == {"soon hidden"} for texts in before.values()), before

    (await call(http_url, author, BLOCK, id=reader.id)).ok()
    await asyncio.sleep(0.05)
    after = await through_both_replicas(http_url, reader, POST, post_text, id=post["id"])
    assert all(texts == {None} for texts in after.values()), after

    unblock = "mutation($id: ID!) { unblockUser(userId: $id) }"
    (await call(http_url, author, unblock, id=reader.id)).ok()
    await asyncio.sleep(0.05)
    again = await through_both_replicas(http_url, reader, POST, post_text, id=post["id"])
    assert all(texts == {"soon hidden"} for texts in again.values()), again


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
    before = await through_both_replicas(http_url, reader, FEED, feed_ids)
    assert all(ids == {frozenset()} for ids in before.values()), before

    for fan in fans[3:]:  # the fifth and sixth follower: now above the threshold
        (await call(http_url, fan, FOLLOW, id=author.id)).ok()
    post = await create_post(http_url, author, "merged at read time")
    await asyncio.sleep(0.05)
    after = await through_both_replicas(http_url, reader, FEED, feed_ids)
    assert all(ids == {frozenset({post["id"]})} for ids in after.values()), after


async def test_following_a_celebrity_merges_their_new_posts_on_both_replicas_at_once(
    http_url: str, db: Database, settings: Settings
) -> None:
    celebrity, reader, *fans = await make_members(db, settings, 8)
    for fan in fans:  # 6 followers: above the test threshold
        (await call(http_url, fan, FOLLOW, id=celebrity.id)).ok()
    old = await create_post(http_url, celebrity, "before the follow")
    before = await through_both_replicas(http_url, reader, FEED, feed_ids)
    assert all(ids == {frozenset()} for ids in before.values()), before

    (await call(http_url, reader, FOLLOW, id=celebrity.id)).ok()

    # Following backfills recent posts into the timeline; once that is done, a new post
    # can only reach the reader's feed by being merged at read time.
    async def backfilled() -> bool:
        reply = await call(http_url, reader, FEED)
        return old["id"] in feed_ids(reply)

    await wait_until(backfilled, timeout_s=30, interval_s=0.1, message="backfill")
    new = await create_post(http_url, celebrity, "after the follow")
    await asyncio.sleep(0.05)
    after = await through_both_replicas(http_url, reader, FEED, feed_ids)
    assert all(ids == {frozenset({old["id"], new["id"]})} for ids in after.values()), after
