"""The faults the chaos suite injects, one part at a time, and what each looks like when
it has recovered (a probe that a fresh write went all the way through that part)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from ray.util.state import list_actors

from actors.consumers.analytics_sink import AnalyticsSink
from actors.consumers.fanout import FanoutConsumer
from actors.consumers.features import FeatureConsumer
from actors.consumers.mail import MailConsumer
from actors.consumers.notifications import NotificationConsumer
from actors.directory import shard_name, shard_of
from actors.remote import CHAT, COUNTER, TIMELINE
from deployments.settings import Settings
from deployments.stack import Stack
from deployments.stack.supervisor import pid_in
from deployments.workers import consumer_member_name, relay_name
from storage.db import Database
from storage.kafka.consumer import Consumer
from tests.support.chat import HISTORY, send
from tests.support.graphql import Reply
from tests.support.social import CREATE_POST, LIKE, POST, Member, call, feed_ids


@dataclass
class Probes:
    """A follower F of an author P outside the load, a room R of theirs, a post X of P's,
    and fresh likers: what the probes write with, so a probe reads only its own writes."""

    http_url: str
    db: Database
    settings: Settings
    stack: Stack
    author: Member
    follower: Member
    likers: list[Member]
    room: str
    post_id: str

    async def feed_reached(self) -> None:
        """A post P makes now reaches F's feed (relay, broker, fan-out, timeline shard)."""
        text = f"probe {uuid.uuid4()}"
        key = uuid.uuid4().hex
        created = await until(
            lambda: call(self.http_url, self.author, CREATE_POST, text=text, key=key)
        )
        post_id = created["createPost"]["id"]

        async def there() -> bool:
            return post_id in await feed_ids(self.http_url, self.follower)

        try:
            await until_true(there)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {await self._trail(post_id)}") from exc

    async def _trail(self, post_id: str) -> str:
        """Where a post's creation event got to: published? applied by which consumers?"""
        rows = await self.db.fetch(
            "SELECT o.topic, o.published_at, o.publish_epoch,"
            " array(SELECT p.consumer FROM processed_events p WHERE p.event_id = o.event_id)"
            " AS applied_by FROM outbox o WHERE o.aggregate_id = $1",
            post_id,
        )
        pending = await self.db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return f"events of the post: {[dict(r) for r in rows]}; unpublished events: {pending}"

    async def like_counted(self) -> None:
        """A new like of X is acknowledged and X's count equals its likes' rows."""
        liker = self.likers.pop()
        await until(lambda: call(self.http_url, liker, LIKE, id=self.post_id))

        async def counted() -> bool:
            shown = (await call(self.http_url, self.author, POST, id=self.post_id)).ok()
            rows = await self.db.fetchval(
                "SELECT count(*) FROM likes WHERE post_id = $1", uuid.UUID(self.post_id)
            )
            return bool(shown["post"]["likeCount"] == rows)

        await until_true(counted)

    async def message_delivered(self) -> None:
        """A message sent to R now is acknowledged and in R's history."""
        text = f"probe {uuid.uuid4()}"
        cmid = uuid.uuid4().hex
        await until(lambda: send(self.http_url, self.author, self.room, text, cmid))

        async def in_history() -> bool:
            reply = await call(self.http_url, self.follower, HISTORY, room=self.room, last=5)
            edges = reply.ok()["messages"]["edges"]
            return text in [edge["node"]["text"] for edge in edges]

        await until_true(in_history)

    async def consumer_applied(self, consumer: type[Consumer[Any]], since: datetime) -> None:
        """The consumer group has applied an event committed after `since`."""
        if consumer is MailConsumer:
            email = f"{self.author.username}@example.com"
            await until(lambda: call(self.http_url, None, RESET, e=email))

        async def applied() -> bool:
            count = await self.db.fetchval(
                "SELECT count(*) FROM outbox o JOIN processed_events p"
                " ON p.event_id = o.event_id AND p.consumer = $1"
                " WHERE o.topic = ANY($2::text[]) AND o.created_at > $3",
                consumer.name,
                list(consumer.topics),
                since,
            )
            return bool(count)

        await until_true(applied)


RESET = "mutation($e: String!) { requestPasswordReset(email: $e) }"
# How long a probe waits for a part to come back before the suite calls it a failure.
RECOVERY_WAIT_S = 90.0
_PROBE_ERRORS = (AssertionError, httpx.HTTPError, ValueError, OSError, asyncpg.PostgresError)


async def until(request: Callable[[], Awaitable[Reply]]) -> Any:
    """The data of the first successful reply to `request` (one write, retried with the
    same key while the part comes back)."""
    last: Any = None
    deadline = time.monotonic() + RECOVERY_WAIT_S
    while time.monotonic() < deadline:
        try:
            reply = await request()
            if reply.status == 200 and not reply.errors:
                return reply.data
            last = reply.errors
        except _PROBE_ERRORS as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"not acknowledged within {RECOVERY_WAIT_S}s: {last}")


async def until_true(check: Callable[[], Awaitable[bool]]) -> None:
    last: Any = None
    deadline = time.monotonic() + RECOVERY_WAIT_S
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except _PROBE_ERRORS as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{check.__qualname__} not true within {RECOVERY_WAIT_S}s: {last}")


def kill_actor(name: str | None = None, class_prefix: str | None = None) -> int:
    """SIGKILL the process of a live Ray actor (by name, or the first by class); its pid."""
    for actor in list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=1000):
        named = name is not None and actor.name == name
        classed = class_prefix is not None and (actor.class_name or "").startswith(class_prefix)
        if (named or classed) and actor.pid:
            os.kill(actor.pid, signal.SIGKILL)
            return int(actor.pid)
    raise AssertionError(f"no live actor {name or class_prefix}")


def kill_pid_file(path: os.PathLike[str]) -> None:
    pid = pid_in(path)  # type: ignore[arg-type]
    assert pid is not None, f"no pid in {path}"
    os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class Fault:
    """One part to break, how, and the probe that shows it works again."""

    component: str
    inject: Callable[[Probes], object]
    probe: Callable[[Probes, datetime], Awaitable[None]]


def _shard(kind: str, key: Callable[[Probes], str], shards: Callable[[Settings], int]) -> Any:
    def inject(p: Probes) -> None:
        kill_actor(shard_name(kind, shard_of(uuid.UUID(key(p)), shards(p.settings))))

    return inject


def _consumer(consumer: type[Consumer[Any]]) -> Fault:
    path = f"{consumer.__module__}:{consumer.__name__}"
    return Fault(
        f"consumer {consumer.name}",
        lambda p: kill_actor(consumer_member_name(path, 0)),
        lambda p, since: p.consumer_applied(consumer, since),
    )


def _restart_postgresql(p: Probes) -> None:
    p.stack.postgres.stop()
    p.stack.postgres.start()


FAULTS: tuple[Fault, ...] = (
    Fault(
        "timeline shard",
        _shard(TIMELINE, lambda p: p.follower.id, lambda s: s.timeline_shards),
        lambda p, _: p.feed_reached(),
    ),
    Fault(
        "counter shard",
        _shard(COUNTER, lambda p: p.post_id, lambda s: s.counter_shards),
        lambda p, _: p.like_counted(),
    ),
    Fault(
        "chat shard",
        _shard(CHAT, lambda p: p.room, lambda s: s.chat_shards),
        lambda p, _: p.message_delivered(),
    ),
    Fault("outbox relay", lambda p: kill_actor(relay_name(0)), lambda p, _: p.feed_reached()),
    _consumer(FanoutConsumer),
    _consumer(NotificationConsumer),
    _consumer(FeatureConsumer),
    _consumer(AnalyticsSink),
    _consumer(MailConsumer),
    Fault(
        "gateway replica",
        lambda p: kill_actor(class_prefix="ServeReplica:nova:Gateway"),
        lambda p, _: p.feed_reached(),
    ),
    Fault(
        "broker",
        lambda p: kill_pid_file(p.stack.broker.pid_file),
        lambda p, _: p.feed_reached(),
    ),
    Fault(
        "redis",
        lambda p: kill_pid_file(p.stack.redis.pid_file),
        lambda p, _: p.like_counted(),
    ),
    Fault("postgresql (restart)", _restart_postgresql, lambda p, _: p.feed_reached()),
)
