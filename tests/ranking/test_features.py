"""The online feature layout against the real Redis: what the feature consumer writes for
each event, and what `FeatureLookup` reads back, without Serve in between (the ranked-feed
tests cover the deployed path)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from actors.consumers.features import FeatureConsumer
from deployments.settings import Settings
from ranking.features import FeatureLookup
from ranking.schema import DEFAULTS, NAMES
from storage.db import Database
from storage.errors import PoisonEvent
from storage.events import Event
from storage.redis_client import make_redis

pytestmark = pytest.mark.stack

T0 = 1_900_000_000.0  # a fixed moment, so decay is exact
DAY = 86_400.0


@pytest.fixture
async def consumer(settings: Settings) -> AsyncIterator[FeatureConsumer]:
    features = FeatureConsumer(settings.replace(feature_half_life_s=DAY))
    await features.start()
    try:
        yield features
    finally:
        await features.stop()


@pytest.fixture
async def lookup(settings: Settings) -> AsyncIterator[FeatureLookup]:
    redis = make_redis(settings)
    try:
        yield FeatureLookup(redis, half_life_s=DAY)
    finally:
        await redis.aclose()


def event(type_: str, at: float = T0, **payload: Any) -> Event:
    body = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in payload.items()}
    return Event(
        type=type_,
        aggregate_id=str(next(iter(payload.values()))),
        payload=body,
        occurred_at=datetime.fromtimestamp(at, UTC),
    )


async def apply(consumer: FeatureConsumer, *events: Event) -> None:
    for e in events:
        await consumer.apply(e, None)  # type: ignore[arg-type] # Redis only: no connection


async def row(
    lookup: FeatureLookup, viewer: uuid.UUID, post: uuid.UUID, now: float
) -> dict[str, float]:
    matrix = await lookup.matrix(viewer, [post], now=now)
    return dict(zip(NAMES, matrix[0].tolist(), strict=True))


async def test_engagement_before_and_after_its_post_is_counted_and_decays(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    viewer, author, post = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    like = {"post_id": post, "author_id": author, "user_id": viewer}
    # The like's topic is consumed ahead of the post's: the record is written from the middle.
    await apply(consumer, event("social.like.created", T0 - 60, **like))
    early = await row(lookup, viewer, post, T0)
    assert early["post_age_hours"] == DEFAULTS[NAMES.index("post_age_hours")]
    assert early["post_likes"] == pytest.approx(2 ** (-60 / DAY), rel=1e-6)

    await apply(
        consumer,
        event("content.post.created", T0 - 3600, post_id=post, author_id=author, text_length=42),
        event("social.comment.created", T0, **like),
        event("analytics.events", T0, post_id=post, user_id=viewer, kind="CLICK"),
    )
    now = await row(lookup, viewer, post, T0)
    assert now["post_age_hours"] == pytest.approx(1.0)
    assert now["post_text_length"] == 42
    assert now["post_likes"] == pytest.approx(2 ** (-60 / DAY), rel=1e-6)
    assert now["post_comments"] == now["post_clicks"] == pytest.approx(1.0)
    assert now["post_shares"] == 0
    assert now["author_engagement_rate"] == pytest.approx(2.0)  # a like and a comment, one post
    assert now["viewer_author_affinity"] == pytest.approx(1.0 * 2 ** (-60 / DAY) + 2.0, rel=1e-6)

    later = await row(lookup, viewer, post, T0 + DAY)
    assert later["post_comments"] == pytest.approx(0.5)
    assert later["post_age_hours"] == pytest.approx(25.0)


async def test_a_redelivered_event_counts_once(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    viewer, author, post = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    share = event("social.share.created", T0, post_id=post, author_id=author, user_id=viewer)
    await apply(consumer, share, share, share)
    assert (await row(lookup, viewer, post, T0))["post_shares"] == pytest.approx(1.0)


async def test_a_batch_applies_each_event_once_in_order(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    viewer, author, post = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engagement = {"post_id": post, "author_id": author, "user_id": viewer}
    seen_before = event("social.share.created", T0, **engagement)
    await apply(consumer, seen_before)
    like, unlike = (
        event("social.like.created", T0, **engagement),
        event("social.like.deleted", T0, **engagement),
    )
    second_share = event("social.share.created", T0, **engagement)
    # Redelivered inside the batch and from before it; the unlike must follow its like.
    await consumer.apply_many([seen_before, like, like, second_share, unlike, like], None)  # type: ignore[arg-type]
    now = await row(lookup, viewer, post, T0)
    assert now["post_shares"] == pytest.approx(2.0)
    assert now["post_likes"] == pytest.approx(0.0)
    assert now["viewer_author_affinity"] == pytest.approx(0.0)


async def test_deleted_comments_and_shares_are_taken_back(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    viewer, author, post = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engagement = {"post_id": post, "author_id": author, "user_id": viewer}
    await apply(
        consumer,
        event("content.post.created", T0, post_id=post, author_id=author, text_length=5),
        event("social.comment.created", T0, comment_id=uuid.uuid4(), **engagement),
        event("social.comment.created", T0, comment_id=uuid.uuid4(), **engagement),
        event("social.share.created", T0, share_id=uuid.uuid4(), **engagement),
    )
    await apply(
        consumer,
        event("social.comment.deleted", T0, comment_id=uuid.uuid4(), **engagement),
        event("social.share.deleted", T0, share_id=uuid.uuid4(), **engagement),
    )
    now = await row(lookup, viewer, post, T0)
    assert now["post_comments"] == pytest.approx(1.0)
    assert now["post_shares"] == 0
    assert now["viewer_author_affinity"] == pytest.approx(2.0)  # one comment left
    assert now["author_engagement_rate"] == pytest.approx(1.0)


async def test_clicks_count_once_per_person_per_window_and_never_the_authors_own(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    """A click is the client's word, so a post's click feature counts each person at most
    once per window (the half-life) and never its author (`trackEvents` names the author)."""
    viewer, other, author, post = (uuid.uuid4() for _ in range(4))

    def click(user: uuid.UUID, at: float) -> Event:
        return event(
            "analytics.events", at, user_id=user, post_id=post, author_id=author, kind="CLICK"
        )

    await apply(
        consumer,
        *(click(viewer, T0 + n) for n in range(5)),
        *(click(author, T0 + n) for n in range(3)),
        click(other, T0),
    )
    assert (await row(lookup, viewer, post, T0 + 5))["post_clicks"] == pytest.approx(2.0, rel=1e-3)
    # A window later the same person counts again (on top of what has decayed since).
    await apply(consumer, click(viewer, T0 + DAY + 1), click(viewer, T0 + DAY + 2))
    later = (await row(lookup, viewer, post, T0 + DAY + 2))["post_clicks"]
    assert later == pytest.approx(2.0 * 2 ** (-(DAY + 2) / DAY) + 1.0, rel=1e-3)


async def test_a_malformed_event_fails_its_batch_before_anything_is_written(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    viewer, author, post = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    good = event("social.share.created", T0, post_id=post, author_id=author, user_id=viewer)
    bad = event("social.share.created", T0, post_id=post, author_id="not an id", user_id=viewer)
    with pytest.raises(PoisonEvent):
        await consumer.apply_many([good, bad], None)  # type: ignore[arg-type]
    assert (await row(lookup, viewer, post, T0))["post_shares"] == 0
    await apply(consumer, good)  # the runner's one-at-a-time retry: the good one lands
    assert (await row(lookup, viewer, post, T0))["post_shares"] == pytest.approx(1.0)


async def test_follows_and_mutual_follows_track_both_directions(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    viewer, author, post = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await apply(
        consumer,
        event("content.post.created", T0, post_id=post, author_id=author, text_length=1),
        event("graph.follow.created", follower_id=author, followee_id=viewer),
    )
    followed_by_only = await row(lookup, viewer, post, T0)
    assert followed_by_only["viewer_follows_author"] == followed_by_only["mutual_follow"] == 0

    await apply(consumer, event("graph.follow.created", follower_id=viewer, followee_id=author))
    both = await row(lookup, viewer, post, T0)
    assert both["viewer_follows_author"] == both["mutual_follow"] == 1

    await apply(consumer, event("graph.follow.deleted", follower_id=author, followee_id=viewer))
    one_way = await row(lookup, viewer, post, T0)
    assert (one_way["viewer_follows_author"], one_way["mutual_follow"]) == (1, 0)


async def test_rows_follow_the_order_asked_and_unknown_posts_get_the_defaults(
    consumer: FeatureConsumer, lookup: FeatureLookup
) -> None:
    viewer = uuid.uuid4()
    authors = [uuid.uuid4(), uuid.uuid4()]
    posts = [uuid.uuid4() for _ in range(6)]
    for n, post in enumerate(posts[:4]):
        await apply(
            consumer,
            event(
                "content.post.created",
                T0,
                post_id=post,
                author_id=authors[n % 2],
                text_length=10 + n,
            ),
        )
    asked = [posts[3], posts[4], posts[0], posts[5], posts[2], posts[1]]
    matrix = await lookup.matrix(viewer, asked, now=T0)
    assert matrix.dtype == np.float32
    assert matrix.shape == (6, len(NAMES))
    lengths = matrix[:, NAMES.index("post_text_length")].tolist()
    assert lengths == [13, 0, 10, 0, 12, 11]
    for unknown in (1, 3):
        np.testing.assert_array_equal(matrix[unknown], DEFAULTS)
    assert (await lookup.matrix(viewer, [], now=T0)).shape == (0, len(NAMES))


class CountingRedis:
    """The real client, counting the round trips `FeatureLookup` makes: each MGET on the
    client, and each pipeline (executed once)."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self.round_trips = 0

    async def mget(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        return await self._redis.mget(*args, **kwargs)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        return self._redis.pipeline(*args, **kwargs)


async def test_naming_the_authors_reads_the_same_rows_in_one_round_trip(
    consumer: FeatureConsumer, settings: Settings
) -> None:
    viewer, author, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    posts = [uuid.uuid4() for _ in range(3)]
    for post, by in zip(posts[:2], (author, other), strict=True):
        await apply(
            consumer,
            event("content.post.created", T0, post_id=post, author_id=by, text_length=42),
        )
    like = {"post_id": posts[0], "author_id": author, "user_id": viewer}
    await apply(
        consumer,
        event("social.like.created", T0, **like),
        event("graph.follow.created", follower_id=viewer, followee_id=author),
    )
    redis = make_redis(settings)
    try:
        counting = CountingRedis(redis)
        lookup = FeatureLookup(counting, half_life_s=DAY)  # type: ignore[arg-type]
        known = await lookup.matrix(viewer, posts[:2], now=T0)
        assert counting.round_trips == 2
        counting.round_trips = 0
        named = await lookup.matrix(viewer, posts[:2], authors=[author, other], now=T0)
        assert counting.round_trips == 1
        np.testing.assert_array_equal(named, known)
        assert named[0, NAMES.index("viewer_author_affinity")] > 0

        # A post whose own record is not written yet still gets its author's columns.
        unwritten = await lookup.matrix(viewer, posts[2:], authors=[author], now=T0)
        assert unwritten[0, NAMES.index("viewer_follows_author")] == 1
        assert unwritten[0, NAMES.index("post_text_length")] == DEFAULTS[1]
        with pytest.raises(ValueError, match="2 authors for 1 posts"):
            await lookup.matrix(viewer, posts[:1], authors=[author, other], now=T0)
    finally:
        await redis.aclose()


async def test_a_rebuild_from_postgresql_gives_what_the_consumer_would_have(
    db: Database, deployed: Settings, lookup: FeatureLookup
) -> None:
    from ranking.feature_rebuild import rebuild
    from tests.support.social import make_members

    viewer, author = await make_members(db, deployed, 2, prefix="rb")
    now = time.time()
    post, shared = uuid.uuid4(), uuid.uuid4()
    text = "a post whose features are rebuilt"
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO posts (id, author_id, text, search, created_at)"
            " VALUES ($1, $2, $3, '', to_timestamp($4))",
            post,
            author.uuid,
            text,
            now - 3600,
        )
        await conn.execute(
            "INSERT INTO likes (post_id, user_id, created_at) VALUES ($1, $2, to_timestamp($3))",
            post,
            viewer.uuid,
            now - DAY,
        )
        await conn.execute(
            "INSERT INTO comments (id, post_id, author_id, text, created_at)"
            " VALUES ($1, $2, $3, 'nice', to_timestamp($4))",
            uuid.uuid4(),
            post,
            viewer.uuid,
            now,
        )
        await conn.execute(
            "INSERT INTO posts (id, author_id, text, search, shared_post_id, created_at)"
            " VALUES ($1, $2, '', '', $3, to_timestamp($4))",
            shared,
            viewer.uuid,
            post,
            now,
        )
        await conn.executemany(
            "INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)",
            [(viewer.uuid, author.uuid), (author.uuid, viewer.uuid)],
        )
        # The viewer's first click counts, the second (within a half-life) does not, and
        # the author's own never does: as the consumer counts them.
        await conn.executemany(
            "INSERT INTO analytics_events (event_id, user_id, post_id, kind, occurred_at)"
            " VALUES ($1, $2, $3, 'CLICK', to_timestamp($4))",
            [
                (uuid.uuid4(), viewer.uuid, post, now - 3600),
                (uuid.uuid4(), viewer.uuid, post, now - 1800),
                (uuid.uuid4(), author.uuid, post, now),
            ],
        )
    redis = make_redis(deployed)
    try:
        stale = f"nova:f:p:{uuid.uuid4()}"  # the layout before records
        await redis.hset(stale, "a", "x")
        report = await rebuild(db, redis, deployed.replace(feature_half_life_s=DAY), now=now)
        assert not await redis.exists(stale)
    finally:
        await redis.aclose()
    assert report.posts >= 2
    assert report.old_keys_removed >= 1

    rebuilt = await row(lookup, viewer.uuid, post, now)
    assert rebuilt["post_text_length"] == len(text)
    assert rebuilt["post_age_hours"] == pytest.approx(1.0, abs=1e-3)
    assert rebuilt["post_likes"] == pytest.approx(0.5, rel=1e-4)  # a day old: half
    assert rebuilt["post_comments"] == pytest.approx(1.0, rel=1e-4)
    assert rebuilt["post_shares"] == pytest.approx(1.0, rel=1e-4)
    assert rebuilt["post_clicks"] == pytest.approx(2 ** (-1 / 24), rel=1e-4)  # an hour old
    assert rebuilt["author_engagement_rate"] == pytest.approx(3.0)  # like, comment, share
    assert rebuilt["viewer_author_affinity"] == pytest.approx(0.5 + 2.0, rel=1e-4)
    assert rebuilt["viewer_follows_author"] == rebuilt["mutual_follow"] == 1
