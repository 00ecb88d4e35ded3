"""A worker node killed outright under a steady load of posts, likes, follows and chat
messages through the HTTP API (each retried with its key until acknowledged): where the
shards were, where they came back and how long that took, how long clients saw errors,
and what PostgreSQL and the derived state hold afterwards."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from actors.directory import shard_name
from actors.remote import NAMESPACE, shard_counts
from deployments.settings import Settings
from storage.db import Database
from tests.chaos.load import MixedLoad
from tests.cluster import checks
from tests.cluster.nodes import (
    actor_nodes,
    wait_for_actors,
    wait_for_death,
    worker_holding_most,
)
from tests.support.chat import room_of
from tests.support.social import make_members

STEADY_S = 5.0  # load before the node goes, and again once its shards are back
BACK_TIMEOUT_S = 90.0
CLEAN_TIMEOUT_S = 90.0
CONVERGE_S = 120.0
LOAD_KINDS = ("post", "like", "message")


def shard_names(settings: Settings) -> list[str]:
    return [
        shard_name(kind, index)
        for kind, count in shard_counts(settings).items()
        for index in range(count)
    ]


def _actors_on(node_id: str) -> list[str]:
    """Names (or classes, for Serve's unnamed ones) of the live actors on a node."""
    alive = list_actors(
        filters=[("node_id", "=", node_id), ("state", "=", "ALIVE")],
        limit=10_000,
        raise_on_missing_output=False,
    )
    return sorted(a.name or a.class_name for a in alive)


async def _rooms(http_url: str, members: list[Any]) -> dict[str, list[Any]]:
    return {
        await room_of(http_url, members[0], *members[1:4]): members[0:4],
        await room_of(http_url, members[4], *members[5:8]): members[4:8],
    }


async def lose_a_node(
    cluster: Cluster, settings: Settings, db: Database, http_url: str
) -> dict[str, Any]:
    shards = shard_names(settings)
    placement = await asyncio.to_thread(actor_nodes, shards, NAMESPACE)
    members = await make_members(db, settings, 8, prefix="mn")
    load = MixedLoad(http_url, members, await _rooms(http_url, members))
    started_at = datetime.now(UTC)
    await load.start()
    try:
        await asyncio.sleep(STEADY_S)
        victim = worker_holding_most(cluster, placement)
        moved = sorted(name for name, node in placement.items() if node == victim.node_id)
        on_victim = await asyncio.to_thread(_actors_on, victim.node_id)
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.remove_node, victim, allow_graceful=False)
        await asyncio.to_thread(wait_for_death, victim.node_id, timeout_s=60)
        detected_s = time.monotonic() - killed_at
        back = await asyncio.to_thread(
            wait_for_actors, moved, NAMESPACE, avoid=victim.node_id, timeout_s=BACK_TIMEOUT_S
        )
        clean_s = await checks.seconds_until(
            _clean_since(load, time.monotonic()), timeout_s=CLEAN_TIMEOUT_S
        )
        await asyncio.sleep(STEADY_S)
    finally:
        await load.stop()
    after = await asyncio.to_thread(actor_nodes, shards, NAMESPACE)
    errors = load.errors_since(killed_at)
    acked = load.acknowledged
    return {
        "shards_before": {name: _short(node) for name, node in placement.items()},
        "removed_node": _short(victim.node_id),
        "actors_on_removed_node": on_victim,
        "shards_moved": moved,
        # From the kill: until the GCS declared the node dead, until each shard was back.
        "node_dead_after_s": round(detected_s, 2),
        "shards_back_s": {name: round(detected_s + s, 2) for name, s in back.items()},
        "shards_after": {name: _short(node) for name, node in after.items()},
        "shards_alive_after": len(after),
        "shards_total": len(shards),
        # Once the shards were back: until every kind of write went through at once again.
        "clean_after_back_s": clean_s,
        "errors_for_s": round(max((a.ended for a in errors), default=killed_at) - killed_at, 2),
        "failed_attempts": len(errors),
        "failed_by_kind": dict(Counter(a.kind for a in errors)),
        "acknowledged": {
            "posts": len(acked.posts),
            "likes": len(acked.likes),
            "follows": len(acked.follows),
            "messages": len(acked.messages),
            "given_up": len(acked.given_up),
        },
        **await _afterwards(db, http_url, load, started_at),
    }


def _clean_since(load: MixedLoad, since: float) -> Any:
    """A predicate: every load kind has gone through at once since `since`, and nothing
    started since failed."""

    async def clean() -> bool:
        return load.clean_since(since, LOAD_KINDS)

    return clean


async def _afterwards(
    db: Database, http_url: str, load: MixedLoad, started_at: datetime
) -> dict[str, Any]:
    stored = await checks.stored_exactly_once(db, load.acknowledged)
    rooms = sorted(set(load.acknowledged.message_rooms.values()))
    return {
        "stored": {kind: len(items) for kind, items in stored.items()},
        "stored_examples": {kind: items[:3] for kind, items in stored.items() if items},
        "sequence_gaps": await checks.sequence_gaps(db, rooms),
        "counts_converged_s": await checks.seconds_until(
            lambda: checks.counts_served(http_url, db, load), timeout_s=CONVERGE_S
        ),
        "feeds_converged_s": await checks.seconds_until(
            lambda: checks.feeds_hold_their_posts(http_url, load), timeout_s=CONVERGE_S
        ),
        "consumers_caught_up_s": await checks.seconds_until(
            lambda: checks.consumers_caught_up(db, started_at), timeout_s=CONVERGE_S
        ),
        "dead_letters": await checks.dead_letters_since(db, started_at),
    }


def _short(node_id: str) -> str:
    return node_id[:8]
