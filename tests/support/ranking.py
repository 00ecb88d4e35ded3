"""Ranking as a data scientist and a client meet it: models registered and routed, ranked
feed pages, and a viewer following authors who posted."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

from deployments.settings import Settings
from ranking.models import logistic_regression
from ranking.registry import register, route
from ranking.schema import NAMES
from storage.db import Database
from tests.support.social import FOLLOW, Member, call, create_post, make_members

RANKED = """
query($first: Int, $after: String) {
  feed(first: $first, after: $after, mode: RANKED) {
    edges { cursor score modelVersion node { id text author { id } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
LATEST = "query { feed(first: 50) { edges { node { id } } } }"
WAIT_S = 30
# A new post's features travel outbox, relay, broker and the features consumer, whose
# twelve topics include every impression: late in the full suite, on the embedded broker
# (its partitions only grow, and each fetch scans them), that has taken over 30 s.
FEATURES_WAIT_S = 90


def label(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def weights(**named: float) -> list[float]:
    return [named.get(name, 0.0) for name in NAMES]


async def add_model(
    db: Database, settings: Settings, tmp_path: Path, version: str, **named: float
) -> None:
    path = tmp_path / f"{version}.npz"
    path.write_bytes(logistic_regression(weights(**named), 0.0, NAMES).to_bytes())
    await register(
        db,
        Path(settings.model_store),
        path,
        name=settings.ranking_model,
        version=version,
        created_by="tests",
    )


async def serve_only(db: Database, settings: Settings, version: str) -> None:
    await route(
        db, settings.ranking_model, {version: 100.0}, by="tests", store=Path(settings.model_store)
    )


async def damage_artifact(db: Database, settings: Settings, version: str) -> None:
    """Cut the end off a registered version's stored artifact: its checksum no longer
    matches and it no longer loads."""
    row = await db.fetchrow(
        "SELECT artifact FROM model_versions WHERE name = $1 AND version = $2",
        settings.ranking_model,
        version,
    )
    stored = Path(settings.model_store) / row["artifact"]
    stored.write_bytes(stored.read_bytes()[:-16])


async def ranked(http_url: str, member: Member, first: int = 50, after: str | None = None) -> Any:
    return (await call(http_url, member, RANKED, first=first, after=after)).ok()["feed"]


async def ranked_edges(http_url: str, member: Member) -> list[Any]:
    """Every edge of one ranking of `member`'s feed, page after page. A test looks for its
    own posts here, not on the first page: the shared stack's other tests leave posts that
    are trending today, and up to `ranking_out_of_network` of them are candidates that a
    model may rank above the test's posts."""
    edges: list[Any] = []
    after = None
    for _ in range(5):  # in-network (300 at most) and out-of-network (100) candidates
        page = await ranked(http_url, member, first=100, after=after)
        edges += page["edges"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return edges


async def followed_posts(
    db: Database, settings: Settings, http_url: str, texts: list[str]
) -> tuple[Member, list[Member], list[dict[str, Any]]]:
    """A viewer following one author per text, each of whom posted that text."""
    viewer, *authors = await make_members(db, settings, 1 + len(texts), prefix="rk")
    for author in authors:
        (await call(http_url, viewer, FOLLOW, id=author.id)).ok()
    posts = [await create_post(http_url, a, t) for a, t in zip(authors, texts, strict=True)]
    return viewer, authors, posts


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))
