"""The ranked feed end to end: models registered and routed as a data scientist would, the
feed through the gateway, features kept current by the consumer, A/B splits, rollback,
refused models, paging, out-of-network candidates and blocks.

All tests share the deployment's model name (`ranking_model`, "home") and set its route
themselves; versions get unique labels so tests never collide."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import serve

from deployments.app import RANKING_APP
from deployments.settings import Settings
from ranking.models import logistic_regression
from ranking.registry import route
from ranking.routing import choose
from ranking.schema import NAMES
from storage.db import Database
from tests.conftest import nova_cli, wait_until
from tests.support.onnx_models import onnx_logistic_regression
from tests.support.ranking import (
    FEATURES_WAIT_S,
    LATEST,
    RANKED,
    WAIT_S,
    add_model,
    damage_artifact,
    followed_posts,
    label,
    ranked,
    ranked_edges,
    serve_only,
    sigmoid,
    weights,
)
from tests.support.social import BLOCK, FOLLOW, LIKE, Member, call, create_post, make_members

pytestmark = pytest.mark.stack


async def test_a_crafted_model_orders_the_feed_exactly_as_its_weights_say(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    texts = ["short", "x" * 300, "medium length text", "y" * 120]
    viewer, _, posts = await followed_posts(db, deployed, http_url, texts)
    longest_first, shortest_first = label("len"), label("short")
    await add_model(db, deployed, tmp_path, longest_first, post_text_length=0.01)
    # The second arrives as an ONNX export, registered with the command line.
    exported = tmp_path / "shortest.onnx"
    exported.write_bytes(onnx_logistic_regression(weights(post_text_length=-0.01), 0.0, NAMES))
    code, out, err = await nova_cli(
        "models",
        "register",
        str(exported),
        "--name",
        deployed.ranking_model,
        "--version",
        shortest_first,
    )
    assert code == 0, err
    assert "(onnx," in out

    for version, sign in ((longest_first, 1), (shortest_first, -1)):
        await serve_only(db, deployed, version)
        expected = [p["id"] for p in sorted(posts, key=lambda p: sign * -len(p["text"]))]

        seen: list[Any] = []

        async def mine_in_order(
            version: str = version,
            expected: list[str] = expected,
            sign: int = sign,
            seen: list[Any] = seen,
        ) -> Any:
            ranking = await ranked_edges(http_url, viewer)
            edges = [e for e in ranking if e["node"]["id"] in set(expected)]
            ids = [e["node"]["id"] for e in edges]
            # What the last look found, should it never come right.
            seen[:] = [len(ranking)] + [
                (ranking.index(e), len(e["node"]["text"]), e["modelVersion"], e["score"])
                for e in edges
            ]
            # Every post's features have arrived (the consumer is asynchronous), and the
            # route change has reached the replica that answered.
            done = ids == expected and all(
                e["modelVersion"] == version
                and abs(e["score"] - sigmoid(sign * 0.01 * len(e["node"]["text"]))) < 1e-4
                for e in edges
            )
            return edges if done else None

        try:
            edges = await wait_until(
                mine_in_order, timeout_s=FEATURES_WAIT_S, message=f"{version} order"
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; the ranking's length, then each of ours (position, text length,"
                f" version, score): {seen}"
            ) from None
        scores = [e["score"] for e in edges]
        assert scores == sorted(scores, reverse=True)


async def test_features_follow_likes_comments_and_follows(
    http_url: str, db: Database, deployed: Settings
) -> None:
    viewer, author = await make_members(db, deployed, 2, prefix="ft")
    post = await create_post(http_url, author, "a post with forty-one characters in it...")
    store = serve.get_deployment_handle("FeatureStore", app_name=RANKING_APP)

    async def row() -> dict[str, float]:
        matrix = await store.features.remote(viewer.id, [post["id"]])
        return dict(zip(NAMES, np.asarray(matrix)[0].tolist(), strict=True))

    await wait_until(
        lambda: _has(row, post_text_length=41.0), timeout_s=WAIT_S, message="post features"
    )
    before = await row()
    assert before["post_likes"] == before["viewer_author_affinity"] == 0.0
    assert before["viewer_follows_author"] == before["mutual_follow"] == 0.0
    assert 0 <= before["post_age_hours"] < 1

    (await call(http_url, viewer, LIKE, id=post["id"])).ok()
    (await call(http_url, viewer, FOLLOW, id=author.id)).ok()
    (await call(http_url, author, FOLLOW, id=viewer.id)).ok()
    after = await wait_until(
        lambda: _has(row, viewer_follows_author=1.0, mutual_follow=1.0, post_likes=1.0),
        timeout_s=WAIT_S,
        message="features after like and follows",
    )
    assert after["viewer_author_affinity"] == pytest.approx(1.0, abs=1e-3)
    assert after["author_engagement_rate"] == pytest.approx(1.0, abs=1e-3)


async def _has(row: Any, **expected: float) -> dict[str, float] | None:
    values: dict[str, float] = await row()
    close = all(abs(values[k] - v) < 1e-3 for k, v in expected.items())
    return values if close else None


async def test_a_route_change_and_a_rollback_serve_within_a_second(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    viewer, _, _ = await followed_posts(db, deployed, http_url, ["one post to rank"])
    old, new = label("old"), label("new")
    await add_model(db, deployed, tmp_path, old, post_likes=1.0)
    await add_model(db, deployed, tmp_path, new, post_likes=2.0)
    await serve_only(db, deployed, old)

    async def versions() -> set[str]:
        # Several reads: the two gateway replicas each keep their own copy of the routes.
        feeds = [await ranked(http_url, viewer) for _ in range(4)]
        return {e["modelVersion"] for f in feeds for e in f["edges"]}

    await wait_until(lambda: _equals(versions, {old}), timeout_s=WAIT_S, message="old serves")

    code, out, err = await nova_cli("models", "route", deployed.ranking_model, f"{new}=100")
    assert code == 0, err
    changed = time.monotonic()
    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - changed)))
    assert await versions() == {new}

    code, out, err = await nova_cli("models", "rollback", deployed.ranking_model)
    assert code == 0, err
    assert f"back to {old}=100" in out
    rolled_back = time.monotonic()
    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - rolled_back)))
    assert await versions() == {old}


async def _served_by(http_url: str, viewer: Member, version: str) -> bool:
    edges = (await ranked(http_url, viewer))["edges"]
    return bool(edges) and {e["modelVersion"] for e in edges} == {version}


async def _equals(get: Any, expected: set[str]) -> bool:
    return bool(await get() == expected)


async def test_a_split_sends_each_user_to_the_version_their_bucket_selects(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    author, *viewers = await make_members(db, deployed, 13, prefix="ab")
    for viewer in viewers:
        (await call(http_url, viewer, FOLLOW, id=author.id)).ok()
    await create_post(http_url, author, "everyone sees this one")
    a, b = label("a"), label("b")
    await add_model(db, deployed, tmp_path, a, post_likes=1.0)
    await add_model(db, deployed, tmp_path, b, post_likes=3.0)
    arms = {a: 50.0, b: 50.0}
    await route(db, deployed.ranking_model, arms, by="tests", store=Path(deployed.model_store))

    expected = {v.id: choose(arms, deployed.ranking_model, v.id) for v in viewers}
    assert set(expected.values()) == {a, b}  # 12 users: both arms are drawn

    async def served() -> dict[str, str | None] | None:
        seen: dict[str, str | None] = {}
        for viewer in viewers:
            edges = (await ranked(http_url, viewer))["edges"]
            if not edges:
                return None  # fan-out still on its way
            seen[viewer.id] = edges[0]["modelVersion"]
        return seen

    async def served_as_routed() -> dict[str, str | None] | None:
        seen = await served()
        return seen if seen == expected else None  # every replica has the new route

    await wait_until(served_as_routed, timeout_s=WAIT_S, message="each viewer's version")


async def test_bad_models_are_refused_and_the_serving_version_keeps_serving(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    viewer, _, _ = await followed_posts(db, deployed, http_url, ["still ranked"])
    serving = label("serving")
    await add_model(db, deployed, tmp_path, serving, post_likes=1.0)
    await serve_only(db, deployed, serving)
    name = deployed.ranking_model

    wrong = tmp_path / "wrong.npz"
    wrong.write_bytes(logistic_regression([1.0, 2.0], 0.0, ["post_likes", "shoe_size"]).to_bytes())
    code, _, err = await nova_cli(
        "models", "register", str(wrong), "--name", name, "--version", label("wrong")
    )
    assert code == 2
    assert "do not match the feature store schema" in err
    assert "shoe_size" in err

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a model")
    code, _, err = await nova_cli(
        "models", "register", str(corrupt), "--name", name, "--version", label("corrupt")
    )
    assert code == 2
    assert "model refused" in err

    # Registered fine, then its stored artifact is damaged: routing to it is refused.
    damaged = label("damaged")
    await add_model(db, deployed, tmp_path, damaged, post_likes=5.0)
    await damage_artifact(db, deployed, damaged)
    code, _, err = await nova_cli("models", "route", name, f"{damaged}=100")
    assert code == 2
    assert "checksum" in err

    listing = (await nova_cli("models", "list", name))[1]
    assert f"{serving}" in listing
    assert "100% traffic" in listing
    assert "wrong" not in listing
    assert "corrupt" not in listing
    await asyncio.sleep(1.0)
    edges = (await ranked(http_url, viewer))["edges"]
    assert edges
    assert {e["modelVersion"] for e in edges} == {serving}


async def test_ranked_pages_are_stable_and_out_of_network_posts_respect_blocks(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    viewer, friend, stranger = await make_members(db, deployed, 3, prefix="pg")
    (await call(http_url, viewer, FOLLOW, id=friend.id)).ok()
    own = [await create_post(http_url, friend, f"friend post {i}") for i in range(7)]
    outside = await create_post(http_url, stranger, "liked by a friend")
    (await call(http_url, friend, LIKE, id=outside["id"])).ok()
    version = label("pages")
    await add_model(db, deployed, tmp_path, version, post_text_length=0.01)
    await serve_only(db, deployed, version)
    await wait_until(
        lambda: _served_by(http_url, viewer, version), timeout_s=WAIT_S, message="the route"
    )

    wanted = {p["id"] for p in own} | {outside["id"]}

    async def complete() -> list[str] | None:
        ids, after = [], None
        while True:
            feed = await ranked(http_url, viewer, first=3, after=after)
            ids += [e["node"]["id"] for e in feed["edges"]]
            if not feed["pageInfo"]["hasNextPage"]:
                return ids if wanted <= set(ids) else None
            after = feed["pageInfo"]["endCursor"]

    ids = await wait_until(complete, timeout_s=WAIT_S, message="out-of-network candidate")
    assert len(ids) == len(set(ids))  # no duplicates across pages

    # Paging goes on in the same ranked list while new posts arrive.
    first = await ranked(http_url, viewer, first=3)
    late = await create_post(http_url, friend, "arrives while paging")

    async def in_latest_feed() -> bool:
        latest = (await call(http_url, viewer, LATEST)).ok()["feed"]["edges"]
        return late["id"] in {e["node"]["id"] for e in latest}

    await wait_until(in_latest_feed, timeout_s=WAIT_S, message="the late post fanned out")
    second = await ranked(http_url, viewer, first=50, after=first["pageInfo"]["endCursor"])
    paged = [e["node"]["id"] for e in (*first["edges"], *second["edges"])]
    assert len(paged) == len(set(paged))
    assert "arrives while paging" not in {e["node"]["text"] for e in second["edges"]}

    bad = await call(http_url, viewer, RANKED, first=3, after="bm90IGEgY3Vyc29y")
    assert bad.codes == ["BAD_USER_INPUT"]

    (await call(http_url, viewer, BLOCK, id=stranger.id)).ok()
    blocked = [e["node"]["id"] for e in await ranked_edges(http_url, viewer)]
    assert outside["id"] not in blocked
    assert {p["id"] for p in own} <= set(blocked)
