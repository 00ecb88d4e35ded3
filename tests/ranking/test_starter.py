"""A ranked feed from the first minute: the deployment registers the starter model and
routes to it where the model has no route (and never over a route someone set); every
impression is logged with the features served, LATEST pages included; and when ranking
cannot happen, the page still comes back newest first and says why."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.settings import Settings
from ranking import features as f
from ranking.registry import get_route, register, rollback, route
from ranking.schema import NAMES
from ranking.starter import VERSION, ensure_starter, starter_model
from storage.db import Database
from storage.repositories.models import ModelStore
from tests.conftest import wait_until
from tests.support.ranking import (
    WAIT_S,
    add_model,
    damage_artifact,
    followed_posts,
    label,
    serve_only,
)
from tests.support.social import call

FEED = """
query($mode: FeedMode) {
  feed(first: 20, mode: $mode) {
    rankingFallback edges { score modelVersion node { id } }
  }
}
"""
TRACK = """
mutation($id: ID!, $version: String) {
  trackEvents(events: [{kind: IMPRESSION, postId: $id, modelVersion: $version, position: 0}])
}
"""


def test_the_starter_model_reads_the_served_schema_and_prefers_what_it_says() -> None:
    model = starter_model()
    assert model.features == NAMES
    fresh, stale = [0.0] * len(NAMES), [0.0] * len(NAMES)
    fresh[NAMES.index("post_age_hours")], stale[NAMES.index("post_age_hours")] = 1.0, 48.0
    followed = list(stale)
    followed[NAMES.index("viewer_follows_author")] = 1.0
    scores = model.score(np.array([fresh, stale, followed], dtype=np.float32))
    assert scores[0] > scores[2] > scores[1]


@pytest.mark.stack
async def test_the_starter_is_registered_routed_once_and_a_rollback_returns_to_it(
    db: Database, deployed: Settings, tmp_path: Path
) -> None:
    store = Path(deployed.model_store)
    # The deployment did it for the served model.
    assert await ModelStore(db).version(deployed.ranking_model, VERSION) is not None

    name = label("starter")
    assert await ensure_starter(db, store, name) == [
        f"registered {name} {VERSION}",
        f"routed {name} {VERSION}=100",
    ]
    assert await ensure_starter(db, store, name) == []
    trained = tmp_path / "t1.npz"
    trained.write_bytes(starter_model().to_bytes())
    await register(db, store, trained, name=name, version="t1", created_by="tests")
    await route(db, name, {"t1": 100.0}, by="tests", store=store)
    assert await ensure_starter(db, store, name) == []  # a route someone set stays
    found = await get_route(db, name)
    assert found is not None
    assert dict(found.arms) == {"t1": 100.0}
    back = await rollback(db, name, by="tests")
    assert dict(back.arms) == {VERSION: 100.0}


@pytest.mark.stack
async def test_latest_pages_log_impressions_with_their_features(
    http_url: str, db: Database, deployed: Settings, redis: Any
) -> None:
    viewer, (author,), posts = await followed_posts(db, deployed, http_url, ["newest first"])
    post_id = posts[0]["id"]

    async def follow_in_features() -> bool:
        return bool(await redis.sismember(f.FOLLOWS + viewer.id, author.id))

    await wait_until(follow_in_features, timeout_s=WAIT_S, message="the follow in the features")

    async def in_feed() -> Any:
        page = (await call(http_url, viewer, FEED, mode="LATEST")).ok()["feed"]
        return post_id in {e["node"]["id"] for e in page["edges"]} and page

    page = await wait_until(in_feed, timeout_s=WAIT_S, message="the post in the LATEST feed")
    assert page["rankingFallback"] is None
    await asyncio.sleep(0.5)  # the page's features are kept after it is answered
    (await call(http_url, viewer, TRACK, id=post_id, version=None)).ok()

    async def logged() -> Any:
        return await db.fetchrow(
            "SELECT model_version, features FROM analytics_events"
            " WHERE user_id = $1 AND post_id = $2 AND kind = 'IMPRESSION'",
            viewer.uuid,
            posts[0]["id"],
        )

    row = await wait_until(logged, timeout_s=WAIT_S, message="the impression logged")
    assert row["model_version"] is None
    assert row["features"] is not None
    assert len(row["features"]) == len(NAMES)
    assert row["features"][NAMES.index("viewer_follows_author")] == 1.0


@pytest.mark.stack
async def test_a_version_that_cannot_load_falls_back_newest_first_and_says_so(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    viewer, _, posts = await followed_posts(db, deployed, http_url, ["still served"])
    broken = label("broken")
    await add_model(db, deployed, tmp_path, broken, post_likes=1.0)
    await serve_only(db, deployed, broken)
    # Damaged after routing, before any Ranker loaded it.
    await damage_artifact(db, deployed, broken)

    async def fell_back() -> Any:
        page = (await call(http_url, viewer, FEED, mode="RANKED")).ok()["feed"]
        return page if page["rankingFallback"] == "MODEL_UNAVAILABLE" else None

    page = await wait_until(fell_back, timeout_s=WAIT_S, message="the fallback to newest first")
    assert posts[0]["id"] in {e["node"]["id"] for e in page["edges"]}
    assert {(e["score"], e["modelVersion"]) for e in page["edges"]} == {(None, None)}
    await serve_only(db, deployed, VERSION)


@pytest.mark.stack
async def test_without_a_route_the_page_comes_back_newest_first_and_says_so(
    http_url: str, db: Database, deployed: Settings
) -> None:
    viewer, _, posts = await followed_posts(db, deployed, http_url, ["no route today"])
    # An operator's stack before any deployment routed the model (SQL: no command unroutes).
    await db.fetchval(
        "DELETE FROM model_routes WHERE name = $1 RETURNING 1", deployed.ranking_model
    )
    try:

        async def fell_back() -> Any:
            page = (await call(http_url, viewer, FEED, mode="RANKED")).ok()["feed"]
            return page if page["rankingFallback"] == "NO_ROUTE" else None

        page = await wait_until(fell_back, timeout_s=WAIT_S, message="the NO_ROUTE fallback")
        assert posts[0]["id"] in {e["node"]["id"] for e in page["edges"]}
        assert {(e["score"], e["modelVersion"]) for e in page["edges"]} == {(None, None)}
    finally:
        await serve_only(db, deployed, VERSION)
