"""Client events end to end: trackEvents → outbox → analytics.events → the sink's COPY into
PostgreSQL with the features served; clicks feed the features; the seen filter; and the
data scientist's `nova models train` and `nova models report` on logged data."""

from __future__ import annotations

import json
import struct
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from deployments.settings import Settings
from ranking.report import LATENCY_KEY
from ranking.schema import NAMES
from storage.db import Database
from storage.repositories.analytics import COLUMNS
from tests.conftest import nova_cli, wait_until
from tests.support.ranking import WAIT_S, add_model, followed_posts, label, ranked, serve_only
from tests.support.social import BLOCK, call, create_post, make_members

pytestmark = pytest.mark.stack

TRACK = "mutation($events: [TrackedEventInput!]!) { trackEvents(events: $events) }"


async def logged(db: Database, user_id: str) -> list[Any]:
    rows: list[Any] = await db.fetch(
        "SELECT * FROM analytics_events WHERE user_id = $1 ORDER BY kind, position",
        uuid.UUID(user_id),
    )
    return rows


async def test_impressions_land_in_postgresql_with_the_features_that_were_served(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    texts = ["a" * 40, "b" * 90]
    viewer, _, posts = await followed_posts(db, deployed, http_url, texts)
    version = label("logged")
    await add_model(db, deployed, tmp_path, version, post_text_length=0.01)
    await serve_only(db, deployed, version)

    async def both_ranked() -> list[Any] | None:
        edges = (await ranked(http_url, viewer))["edges"]
        ours = [e for e in edges if e["node"]["id"] in {p["id"] for p in posts}]
        # Ranked with the model, once the posts' features have reached the feature store.
        ok = len(ours) == 2 and all(
            e["modelVersion"] == version
            and abs(e["score"] - 1 / (1 + np.exp(-0.01 * len(e["node"]["text"])))) < 1e-4
            for e in ours
        )
        return ours if ok else None

    edges = await wait_until(both_ranked, timeout_s=WAIT_S, message="ranked with the model")
    first, second = edges
    events = [
        {
            "kind": "IMPRESSION",
            "postId": first["node"]["id"],
            "modelVersion": version,
            "position": 0,
        },
        {
            "kind": "IMPRESSION",
            "postId": second["node"]["id"],
            "modelVersion": version,
            "position": 1,
        },
        {"kind": "CLICK", "postId": first["node"]["id"], "modelVersion": version, "position": 0},
        {"kind": "DWELL", "postId": first["node"]["id"], "dwellMs": 7200},
    ]
    assert (await call(http_url, viewer, TRACK, events=events)).ok() == {"trackEvents": 4}

    rows = await wait_until(
        lambda: _count(db, viewer.id, 4), timeout_s=WAIT_S, message="4 rows in analytics_events"
    )
    by_kind = {(r["kind"], r["position"]): r for r in rows}
    for position, edge in enumerate(edges):
        impression = by_kind[("IMPRESSION", position)]
        assert str(impression["post_id"]) == edge["node"]["id"]
        assert impression["model_name"] == deployed.ranking_model
        assert impression["model_version"] == version
        served = dict(zip(NAMES, impression["features"], strict=True))
        # What the model saw: its score is sigmoid(0.01 * text length) of these features.
        assert served["post_text_length"] == len(edge["node"]["text"])
        assert edge["score"] == pytest.approx(
            1 / (1 + np.exp(-0.01 * served["post_text_length"])), abs=1e-4
        )
    assert by_kind[("CLICK", 0)]["features"] is None
    assert by_kind[("DWELL", None)]["dwell_ms"] == 7200

    # The click reaches the post's online features.
    from ranking import features
    from storage.redis_client import make_redis

    redis = make_redis(deployed)
    try:

        async def clicked() -> bool:
            record = cast(bytes, await redis.get(features.POST + first["node"]["id"]) or b"")
            clicks = record[features.record_offset("clicks") :][:8]
            return len(clicks) == 8 and struct.unpack("<d", clicks)[0] > 0

        await wait_until(clicked, timeout_s=WAIT_S, message="click counted in features")
        # Both posts were seen: they now rank after unseen ones (none here), still present.
        assert await redis.sismember(f"nova:seen:{viewer.id}", first["node"]["id"])

        # The Ranker flushes its scoring latencies to Redis once a second.
        samples = LATENCY_KEY.format(name=deployed.ranking_model, version=version)

        async def latencies_flushed() -> bool:
            return bool(await redis.llen(samples))

        await wait_until(latencies_flushed, timeout_s=WAIT_S, message="latency samples")
    finally:
        await redis.aclose()

    report = json.loads(
        (await nova_cli("models", "report", deployed.ranking_model, "--since", "1h", "--json"))[1]
    )
    ours = next(r for r in report if r["version"] == version)
    assert ours["impressions"] == 2
    assert ours["engaged"] == 1  # the first post: clicked and dwelt on
    assert ours["engagement_rate"] == 0.5
    assert ours["scoring_samples"] > 0
    assert ours["scoring_p50_ms"] is not None


async def _count(db: Database, user_id: str, expected: int) -> list[Any] | None:
    rows = await logged(db, user_id)
    return rows if len(rows) >= expected else None


async def test_bad_events_are_refused_and_nothing_is_logged(
    http_url: str, db: Database, deployed: Settings
) -> None:
    viewer, _, posts = await followed_posts(db, deployed, http_url, ["p"])
    post_id = posts[0]["id"]
    cases = [
        [{"kind": "DWELL", "postId": post_id}],
        [{"kind": "CLICK", "postId": "not-an-id"}],
        [{"kind": "VIEW", "postId": post_id, "position": -1}],
        [{"kind": "VIEW", "postId": post_id}] * 101,
        [],
    ]
    for events in cases:
        reply = await call(http_url, viewer, TRACK, events=events)
        assert reply.codes == ["BAD_USER_INPUT"], events[:1]
    bad_kind = await call(http_url, viewer, TRACK, events=[{"kind": "LIKE", "postId": post_id}])
    assert bad_kind.errors
    anonymous = await call(http_url, None, TRACK, events=[{"kind": "VIEW", "postId": post_id}])
    assert anonymous.codes == ["UNAUTHENTICATED"]
    outbox = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'analytics.events' AND aggregate_id = $1",
        viewer.id,
    )
    assert outbox == 0


async def test_events_count_only_for_posts_the_caller_may_see_and_clicks_once_per_user(
    http_url: str, db: Database, deployed: Settings
) -> None:
    """trackEvents is the client's word: it is taken only for posts the caller may see now
    (an unknown id, a deleted post or one hidden by a block is dropped, and the answer
    counts what was accepted), and a post's click feature counts each person once per
    window, never its author."""
    from ranking import features
    from storage.kafka.ledger import RedisLedger
    from storage.redis_client import make_redis

    viewer, author, blocker, other = await make_members(db, deployed, 4, prefix="trk")
    post = (await create_post(http_url, author, "clicked too often"))["id"]
    hidden = (await create_post(http_url, blocker, "behind a block"))["id"]
    elsewhere = (await create_post(http_url, other, "the author's last click"))["id"]
    assert (await call(http_url, blocker, BLOCK, id=viewer.id)).ok()
    unknown = str(uuid.uuid4())

    def clicks(post_id: str, n: int) -> list[dict[str, Any]]:
        return [{"kind": "CLICK", "postId": post_id}] * n

    async def track(member: Any, events: list[dict[str, Any]]) -> int:
        accepted: int = (await call(http_url, member, TRACK, events=events)).ok()["trackEvents"]
        return accepted

    assert await track(viewer, clicks(unknown, 1) + clicks(hidden, 1)) == 0
    assert await track(viewer, clicks(post, 5) + clicks(unknown, 2)) == 5
    for _ in range(3):  # the author, on their own post
        assert await track(author, clicks(post, 100)) == 100
    # Applied after the author's own clicks (one key, one partition, in order), and counted.
    assert await track(author, clicks(elsewhere, 1)) == 1
    assert await track(other, clicks(post, 1)) == 1

    # What reached the outbox: the accepted events only.
    rows = await db.fetch(
        "SELECT event_id, aggregate_id, payload->>'post_id' AS post_id FROM outbox"
        " WHERE topic = 'analytics.events' AND aggregate_id = ANY($1::text[])",
        [viewer.id, author.id, other.id],
    )
    assert {r["post_id"] for r in rows} == {post, elsewhere}
    assert len(rows) == 5 + 300 + 1 + 1
    # The author's clicks on their own post change no feature (nor the ledger); the others
    # are in the ranking-features ledger once applied.
    counted = [r for r in rows if (r["aggregate_id"], r["post_id"]) != (author.id, post)]
    redis = make_redis(deployed)
    try:
        ledger = RedisLedger(redis, ttl_s=60)

        async def all_applied() -> bool:
            keys = [ledger.key("ranking-features", r["event_id"]) for r in counted]
            return bool(await redis.exists(*keys) == len(keys))

        await wait_until(all_applied, timeout_s=WAIT_S, message="the clicks applied to features")

        async def clicks_of(post_id: str) -> float:
            record = cast(bytes, await redis.get(features.POST + post_id) or b"")
            stored = record[features.record_offset("clicks") :][:8].ljust(8, b"\0")
            value: float = struct.unpack("<d", stored)[0]
            return value

        assert await clicks_of(post) == pytest.approx(2.0, rel=1e-3), "one click per person"
        assert await clicks_of(hidden) == 0
        assert not await redis.exists(features.POST + unknown)  # no key for a made-up post
    finally:
        await redis.aclose()


async def test_the_trainer_beats_a_random_ranker_and_the_report_counts_each_version(
    db: Database, deployed: Settings
) -> None:
    """Logged data generated here: engagement depends on two features; the trained model
    must find that on users it never saw."""
    rng = np.random.default_rng(11)
    name = label("trained").replace("-", "")
    now = datetime.now(UTC)
    users = [uuid.uuid4() for _ in range(200)]
    rows, clicks = [], []
    for i in range(3000):
        x = rng.normal(size=len(NAMES)).astype(np.float32)
        user, post = users[i % len(users)], uuid.uuid4()
        at = now - timedelta(minutes=30) + timedelta(milliseconds=i)
        version = "a" if i % 3 else "b"
        rows.append(
            (
                uuid.uuid4(),
                user,
                post,
                "IMPRESSION",
                name,
                version,
                0,
                None,
                [float(v) for v in x],
                at,
            )
        )
        if rng.random() < 1 / (1 + np.exp(-(2.5 * x[3] - 2.0 * x[8]))):
            clicks.append(
                (
                    uuid.uuid4(),
                    user,
                    post,
                    "CLICK",
                    name,
                    version,
                    0,
                    None,
                    None,
                    at + timedelta(seconds=1),
                )
            )
    async with db.transaction() as conn:
        await conn.copy_records_to_table("analytics_events", records=rows + clicks, columns=COLUMNS)

    code, out, err = await nova_cli(
        "models", "train", "--since", "1h", "--name", name, "--version", "t1"
    )
    assert code == 0, err
    assert "epoch" in out
    assert "held-out AUC" in out
    row = await db.fetchrow(
        "SELECT metrics FROM model_versions WHERE name = $1 AND version = 't1'", name
    )
    metrics = row["metrics"]
    assert metrics["heldout_auc"] > 0.7
    assert metrics["heldout_auc"] > metrics["random_auc"] + 0.15

    code, out, err = await nova_cli("models", "report", name, "--since", "2h", "--json")
    assert code == 0, err
    report = {r["version"]: r for r in json.loads(out)}
    for version, impressions in (("a", 2000), ("b", 1000)):
        engaged = sum(1 for c in clicks if c[5] == version)
        entry = report[version]
        assert entry["impressions"] == impressions
        assert entry["engaged"] == engaged
        assert entry["engagement_rate"] == round(engaged / impressions, 4)
        low, high = entry["rate_ci95"]
        assert low < engaged / impressions < high
        assert entry["impression_share"] == round(impressions / 3000, 4)

    code, _, err = await nova_cli("models", "train", "--since", "2099-01-01T00:00:00Z")
    assert code == 2
    assert "not enough logged impressions" in err
