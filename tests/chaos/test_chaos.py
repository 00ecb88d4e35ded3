"""Chaos: under a steady mixed load of posts, likes, follows and messages (retried with
their keys), each part is broken in turn (SIGKILL, or a restart for PostgreSQL). Each part
must come back by itself; afterwards every acknowledged write is present exactly once and
derived state (feeds, counts, every consumer's ledger) has caught up.

The suite prints a table (component, time until clients stopped seeing errors, time until
a fresh write went through the part, lost, duplicated) and writes it as JSON to the test
stack's state dir (`chaos-report.json`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from actors.consumers import PRODUCTION_CONSUMERS
from deployments.settings import Settings
from deployments.stack import Stack
from storage.db import Database
from storage.kafka.consumer import Consumer
from tests.chaos.faults import FAULTS, Fault, Probes
from tests.chaos.load import MixedLoad
from tests.conftest import wait_until
from tests.support.chat import room_of
from tests.support.social import FOLLOW, Member, call, create_post, make_members

pytestmark = [pytest.mark.stack, pytest.mark.chaos]

STEADY_S = 3.0  # load before each fault, so the fault lands among writes in flight
CONVERGE_S = 120.0


@dataclass
class Chaos:
    load: MixedLoad
    probes: Probes
    started_at: datetime
    results: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
async def chaos(
    stack: Stack, db: Database, deployed: Settings, http_url: str
) -> AsyncIterator[Chaos]:
    members = await make_members(db, deployed, 8, prefix="chaos")
    author, follower, *likers = await make_members(db, deployed, 8, prefix="probe")
    (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    rooms = {
        await room_of(http_url, members[0], *members[1:4]): members[0:4],
        await room_of(http_url, members[4], *members[5:8]): members[4:8],
    }
    probes = Probes(
        http_url=http_url,
        db=db,
        settings=deployed,
        stack=stack,
        author=author,
        follower=follower,
        likers=likers,
        room=await room_of(http_url, author, follower),
        post_id=(await create_post(http_url, author, "the probes' post"))["id"],
    )
    load = MixedLoad(http_url, members, rooms)
    started_at = datetime.now(UTC)
    await load.start()
    chaos = Chaos(load, probes, started_at, {})
    yield chaos
    if not load.stopped:
        await load.stop()


@pytest.mark.parametrize("fault", FAULTS, ids=[f.component for f in FAULTS])
async def test_the_part_comes_back_by_itself(chaos: Chaos, fault: Fault) -> None:
    await asyncio.sleep(STEADY_S)
    killed_at = time.monotonic()
    fault.inject(chaos.probes)
    # Taken after the kill: an event committed before it may have been applied by the
    # process that is now gone, which says nothing about its successor.
    await fault.probe(chaos.probes, datetime.now(UTC))
    recovered_s = time.monotonic() - killed_at
    errors = chaos.load.errors_since(killed_at)
    chaos.results[fault.component] = {
        "errors_for_s": round(max((a.ended for a in errors), default=killed_at) - killed_at, 2),
        "failed_attempts": len(errors),
        "recovered_in_s": round(recovered_s, 2),
    }


async def test_every_acknowledged_write_is_there_exactly_once_and_derived_state_converges(
    chaos: Chaos,
    stack: Stack,
    db: Database,
    http_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await chaos.load.stop()
    acked = chaos.load.acknowledged
    assert not acked.given_up, acked.given_up
    assert len(acked.posts) > 20, "the load should have made posts through the faults"

    lost, duplicated = await _posts_exactly_once(db, acked.posts)
    lost_m, duplicated_m = await _messages_exactly_once(db, acked.messages)
    like_rows = await db.fetch(
        "SELECT user_id::text, post_id::text FROM likes WHERE post_id = ANY($1::uuid[])",
        list(acked.post_authors),
    )
    follow_rows = await db.fetch(
        "SELECT follower_id::text, followee_id::text FROM follows"
        " WHERE follower_id = ANY($1::uuid[])",
        [m.id for m in chaos.load.members],
    )
    lost_likes = acked.likes - {(r[0], r[1]) for r in like_rows}
    lost_follows = acked.follows - {(r[0], r[1]) for r in follow_rows}
    assert not lost, lost
    assert not lost_m, lost_m
    assert not lost_likes, lost_likes
    assert not lost_follows, lost_follows
    assert not duplicated, duplicated
    assert not duplicated_m, duplicated_m

    await wait_until(
        lambda: _counts_match(db, list(acked.post_authors)),
        timeout_s=CONVERGE_S,
        message="like counts equal to the likes' rows",
    )
    await wait_until(
        lambda: _feeds_hold_their_posts(http_url, chaos),
        timeout_s=CONVERGE_S,
        message="every follower's timeline holds the posts made after the follow",
    )
    try:
        await wait_until(
            lambda: _every_consumer_applied_everything(db, chaos.started_at),
            timeout_s=CONVERGE_S,
            message="every consumer applied every event committed during the suite",
        )
    except AssertionError as exc:
        behind = await _not_applied(db, chaos.started_at)
        raise AssertionError(f"{exc}; not applied yet: {behind}") from None
    dead = await db.fetchval(
        "SELECT count(*) FROM dead_letters WHERE failed_at > $1", chaos.started_at
    )
    assert dead == 0

    for component in chaos.results:
        chaos.results[component].update(lost=0, duplicated=0)
    report = {
        "acknowledged": {
            "posts": len(acked.posts),
            "likes": len(acked.likes),
            "follows": len(acked.follows),
            "messages": len(acked.messages),
        },
        "faults": chaos.results,
    }
    stack.layout.path("chaos-report.json").write_text(json.dumps(report, indent=2))
    with capsys.disabled():
        print("\n" + _table(report))


async def _posts_exactly_once(db: Database, posts: dict[str, str]) -> tuple[set[str], set[str]]:
    rows = await db.fetch(
        "SELECT text, array_agg(id::text) AS ids FROM posts WHERE text LIKE 'chaos %' GROUP BY text"
    )
    found = {r["text"]: r["ids"] for r in rows}
    lost = {text for text, post_id in posts.items() if found.get(text) != [post_id]}
    duplicated = {text for text, ids in found.items() if len(ids) > 1}
    return lost, duplicated


async def _messages_exactly_once(
    db: Database, messages: dict[str, str]
) -> tuple[set[str], set[str]]:
    rows = await db.fetch(
        "SELECT client_message_id, array_agg(id::text) AS ids FROM chat_messages"
        " WHERE client_message_id = ANY($1::text[]) GROUP BY client_message_id",
        list(messages),
    )
    found = {r["client_message_id"]: r["ids"] for r in rows}
    lost = {cmid for cmid, mid in messages.items() if found.get(cmid) != [mid]}
    duplicated = {cmid for cmid, ids in found.items() if len(ids) > 1}
    return lost, duplicated


async def _counts_match(db: Database, post_ids: list[str]) -> bool:
    mismatched = await db.fetchval(
        """
        SELECT count(*) FROM posts p
        LEFT JOIN post_counters c ON c.post_id = p.id
        WHERE p.id = ANY($1::uuid[])
          AND coalesce(c.likes, 0) <> (SELECT count(*) FROM likes l WHERE l.post_id = p.id)
        """,
        post_ids,
    )
    return bool(mismatched == 0)


FEED_PAGE = """
query($after: String) {
  feed(first: 50, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } }
}
"""


async def _feed(http_url: str, member: Member) -> set[str]:
    """Every post in `member`'s home feed, page by page (celebrities' posts are merged at
    read time, so the feed, not the timeline in Redis, is what to compare)."""
    ids: set[str] = set()
    after = None
    for _ in range(40):
        page = (await call(http_url, member, FEED_PAGE, after=after)).ok()["feed"]
        ids |= {edge["node"]["id"] for edge in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return ids


async def _feeds_hold_their_posts(http_url: str, chaos: Chaos) -> bool:
    acked = chaos.load.acknowledged
    by_id = {m.id: m for m in chaos.load.members}
    for follower in by_id.values():
        wanted = {
            post_id
            for post_id, author in acked.post_authors.items()
            if (follower.id, author) in acked.follows
            and acked.post_times[post_id] > acked.follow_times[(follower.id, author)]
        }
        if not wanted <= await _feed(http_url, follower):
            return False
    return True


def _consumer_classes() -> list[type[Consumer[Any]]]:
    import importlib

    classes = []
    for path in PRODUCTION_CONSUMERS:
        module, _, name = path.partition(":")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


async def _not_applied(db: Database, since: datetime) -> dict[str, Any]:
    """Per production consumer that is behind: how many events of its topics committed
    since `since` it has not recorded, by topic, and whether they were published."""
    behind: dict[str, Any] = {}
    for consumer in _consumer_classes():
        rows = await db.fetch(
            "SELECT o.topic, o.published_at IS NOT NULL AS published, count(*) AS n,"
            " min(o.created_at) AS oldest FROM outbox o"
            " WHERE o.topic = ANY($2::text[]) AND o.created_at > $3"
            " AND NOT EXISTS (SELECT 1 FROM processed_events p"
            "  WHERE p.consumer = $1 AND p.event_id = o.event_id)"
            " GROUP BY 1, 2",
            consumer.name,
            list(consumer.topics),
            since,
        )
        if rows:
            behind[consumer.name] = [dict(r) for r in rows]
    return behind


async def _every_consumer_applied_everything(db: Database, since: datetime) -> bool:
    return not await _not_applied(db, since)


def _table(report: dict[str, Any]) -> str:
    lines = [
        "| component | clients saw errors for | a fresh write through it after"
        " | lost | duplicated |",
        "|---|---|---|---|---|",
    ]
    for component, row in report["faults"].items():
        lines.append(
            f"| {component} | {row['errors_for_s']:.1f} s ({row['failed_attempts']} attempts)"
            f" | {row['recovered_in_s']:.1f} s | {row['lost']} | {row['duplicated']} |"
        )
    return "\n".join(lines)
