"""The topic catalogue: every topic Nova produces to, with its partition count.

The catalogue is synced into the `kafka_topics` table (`sync_catalogue`), which the outbox
refers to and the relay creates topics from. Partition counts can only grow in Kafka;
raise them here and in a migration-like step, never lower them.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key: str  # what the message key is, for readers of the catalogue


DLQ_TOPIC = "dlq.all"
# One message per broker epoch, written by the relay: its loss reveals a lost broker log.
MARKER_TOPIC = "nova.relay.marker"

CATALOGUE: tuple[Topic, ...] = (
    Topic("identity.user.created", 4, "user_id"),
    Topic("identity.password_reset.requested", 2, "user_id"),
    Topic("identity.email_verification.requested", 2, "user_id"),
    Topic("identity.password.changed", 2, "user_id"),
    Topic("user.profile.updated", 4, "user_id"),
    Topic("graph.follow.created", 8, "follower_id"),
    Topic("graph.follow.deleted", 8, "follower_id"),
    Topic("graph.block.created", 8, "blocker_id"),
    Topic("graph.block.deleted", 8, "blocker_id"),
    Topic("content.post.created", 8, "author_id"),
    Topic("content.post.updated", 8, "author_id"),
    Topic("content.post.deleted", 8, "author_id"),
    Topic("content.story.created", 4, "author_id"),
    Topic("content.story.deleted", 4, "author_id"),
    Topic("social.like.created", 8, "post_id"),
    Topic("social.like.deleted", 8, "post_id"),
    Topic("social.comment.created", 8, "post_id"),
    Topic("social.comment.deleted", 8, "post_id"),
    Topic("social.share.created", 8, "post_id"),
    Topic("social.share.deleted", 8, "post_id"),
    Topic("chat.message.sent", 8, "room_id"),
    Topic("chat.message.deleted", 8, "room_id"),
    Topic("notification.sent", 8, "user_id"),
    Topic("analytics.events", 8, "user_id"),
    Topic("media.uploaded", 4, "media_id"),
    Topic("media.ready", 4, "media_id"),
    Topic("media.failed", 4, "media_id"),
    Topic("moderation.action", 4, "target_id"),
    Topic("privacy.export.ready", 2, "user_id"),
    Topic("account.deletion.requested", 2, "user_id"),
    Topic("account.deletion.cancelled", 2, "user_id"),
    Topic("account.erased", 4, "user_id"),
    Topic(DLQ_TOPIC, 4, "original key"),
    Topic(MARKER_TOPIC, 1, "marker"),
)


async def register_topics(
    conn: asyncpg.Connection, topics: tuple[Topic, ...] | list[Topic]
) -> None:
    """Record topics in `kafka_topics`; a larger partition count replaces a smaller one."""
    await conn.executemany(
        """
        INSERT INTO kafka_topics (name, partitions) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE
            SET partitions = GREATEST(kafka_topics.partitions, EXCLUDED.partitions)
        """,
        [(t.name, t.partitions) for t in topics],
    )


def capped(partitions: int, max_partitions: int) -> int:
    """A topic's partition count on a broker that allows `max_partitions` (0: no cap)."""
    return min(partitions, max_partitions) if max_partitions else partitions


async def sync_catalogue(conn: asyncpg.Connection, *, max_partitions: int = 0) -> None:
    """Record the catalogue; `max_partitions` > 0 caps each topic's count (a small broker)."""
    topics = [Topic(t.name, capped(t.partitions, max_partitions), t.key) for t in CATALOGUE]
    await register_topics(conn, topics)


async def registered_topics(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT name, partitions FROM kafka_topics")
    return {row["name"]: row["partitions"] for row in rows}
