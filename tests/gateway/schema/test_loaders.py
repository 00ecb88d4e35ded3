"""Reads without N+1: a page of posts with authors, counts and `viewerHasLiked` costs the
same small number of SQL statements and shard calls whatever its size.

The schema runs in this process against the real PostgreSQL, Redis and counter shards, so
every statement can be counted (asyncpg's query logger) along with every shard call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from deployments.settings import Settings
from gateway.auth.identity import ClientInfo
from gateway.auth.tokens import AccessClaims
from gateway.runtime import GatewayRuntime
from gateway.schema.context import Context
from gateway.schema.root import build_schema
from gateway.services.graph import Graph
from gateway.services.posts import Posts
from gateway.services.relations import ViewerRelations
from storage.db import Database
from tests.support.social import LIKE, call, create_post, make_members

pytestmark = pytest.mark.stack

PAGE = """
query($id: ID!, $first: Int!) {
  userPosts(userId: $id, first: $first) {
    edges { node {
      id text likeCount commentCount shareCount viewerHasLiked
      author { id username followerCount viewerFollows }
      sharedPost { id likeCount author { username } }
    } }
  }
}
"""


class Statements:
    """Counts statements, not the reset asyncpg's pool runs when a connection goes back."""

    def __init__(self) -> None:
        self.count = 0
        self.db: Database  # the pool whose statements are counted

    def __call__(self, record: Any) -> None:
        if "RESET ALL" not in record.query:
            self.count += 1


@pytest.fixture
async def counted(deployed: Settings) -> AsyncIterator[tuple[GatewayRuntime, Statements]]:
    statements = Statements()
    runtime = await GatewayRuntime.start(deployed)
    counting = statements.db = await Database.connect(deployed, query_logger=statements)
    # Fresh caches (a Posts of its own), so the page is read from PostgreSQL and counted.
    runtime.posts = Posts(
        counting, runtime.counters, runtime.invalidations, cache_size=1_000, cache_ttl_s=60
    )
    runtime.graph = Graph(counting, runtime.counters, runtime.relations)
    try:
        yield runtime, statements
    finally:
        await counting.close()
        await runtime.close()


async def _page_cost(
    runtime: GatewayRuntime, statements: Statements, viewer: uuid.UUID, author: str, first: int
) -> tuple[int, int, int]:
    now = int(time.time())
    claims = AccessClaims(viewer, ("user",), uuid.uuid4().hex, uuid.uuid4(), now, now + 60)
    context = Context(runtime=runtime, client=ClientInfo(), claims=claims)
    # Cold caches: posts and the viewer's blocks come from PostgreSQL, counted.
    runtime.posts.cache.clear()
    runtime.relations = ViewerRelations(statements.db, runtime.invalidations, runtime.settings)
    before = (statements.count, runtime.counters.calls, runtime.users.stats.database_loads)
    result = await build_schema().execute(
        PAGE, variable_values={"id": author, "first": first}, context_value=context
    )
    assert result.errors is None, result.errors
    assert len(result.data["userPosts"]["edges"]) == first  # type: ignore[index]
    return (
        statements.count - before[0],
        runtime.counters.calls - before[1],
        runtime.users.stats.database_loads - before[2],
    )


async def test_a_page_of_posts_costs_the_same_few_round_trips_at_any_size(
    http_url: str,
    db: Database,
    deployed: Settings,
    counted: tuple[GatewayRuntime, Statements],
) -> None:
    runtime, statements = counted
    author, viewer, *others = await make_members(db, deployed, 12)
    originals = [
        await create_post(http_url, other, f"original {n}") for n, other in enumerate(others)
    ]
    share = "mutation($id: ID!) { sharePost(postId: $id) { id } }"
    for n in range(20):
        if n % 2:
            await call(http_url, author, share, id=originals[n % len(originals)]["id"])
        else:
            post = await create_post(http_url, author, f"mine {n}")
            await call(http_url, viewer, LIKE, id=post["id"])

    # Warm up: asyncpg introspects types once per new pooled connection, which is not
    # per-request cost.
    await _page_cost(runtime, statements, viewer.uuid, author.id, 20)
    small = await _page_cost(runtime, statements, viewer.uuid, author.id, 4)
    large = await _page_cost(runtime, statements, viewer.uuid, author.id, 20)
    sql, shard_calls, user_loads = large
    # userPosts, posts, viewer likes, follow state, blocks, shared posts: one each.
    assert sql <= 6, large
    assert sql == small[0], (small, large)
    # Three batches of counts (the page's posts, their authors, the shared posts), each at
    # most one call per shard, whatever the page size.
    assert shard_calls <= 3 * deployed.counter_shards, large
    assert user_loads <= 2, large  # authors, then the shared posts' authors
