"""The erasure of one account, in one transaction (`storage.repositories.erasure` says
when it runs and what follows it).

* Its posts, comments, likes, follows, stories, media, sessions, notifications, exports
  and preferences go (most by the foreign keys' cascade), and the counters of what remains
  (other people's posts it liked, commented on or shared; the people it followed or who
  followed it) are corrected in the same transaction, with one event per change, so the
  consumers take those out of timelines and features as they would any unlike or unfollow.
* Its messages stay in their rooms, from the nil UUID (`ERASED`): "a deleted account".
* Its analytics rows keep their figures under a random pseudonym, for training.
* Reports about the account go, and its part in others' reports is blanked.
* One audit row remains (`ERASE`), the tombstone; `account.erased` tells every consumer.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import asyncpg

from storage.events import Event
from storage.outbox.rows import add_events
from storage.repositories.audit import Audit, add_audit
from storage.repositories.counters import CounterRow, bump

# The sender of a message whose account was erased, and the creator of such a room.
ERASED = uuid.UUID(int=0)
ERASED_EVENT = "account.erased"


@dataclass(frozen=True)
class Erased:
    """What `erase` did, for the caller's work after the commit."""

    user_id: uuid.UUID
    counters: list[CounterRow]
    posts: list[uuid.UUID]
    events: int


@dataclass
class _Plan:
    """Counter corrections and events gathered while the account's rows go."""

    posts: Counter[tuple[uuid.UUID, str]] = field(default_factory=Counter)
    users: Counter[tuple[uuid.UUID, str]] = field(default_factory=Counter)
    events: list[Event] = field(default_factory=list)

    def deltas(self, counts: Counter[tuple[uuid.UUID, str]]) -> dict[uuid.UUID, dict[str, int]]:
        out: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
        for (entity, name), n in counts.items():
            out[entity][name] = -n
        return out


async def erase_account(
    conn: asyncpg.Connection, account: asyncpg.Record, scrub_after_s: float
) -> Erased:
    user_id: uuid.UUID = account["id"]
    plan = _Plan()
    posts = await _drop_contributions(conn, user_id, plan)
    await _drop_follows(conn, user_id, plan)
    rooms = await _anonymize_messages(conn, user_id)
    await _forget_in_moderation(conn, user_id)
    pseudonym = uuid.uuid4()
    await pseudonymize(conn, user_id, pseudonym)
    files = await conn.fetchval(
        """
        SELECT array(SELECT id FROM media WHERE owner_id = $1
                     UNION ALL SELECT id FROM data_exports WHERE user_id = $1)
        """,
        user_id,
    )
    counters = [
        *await bump(conn, "post", plan.deltas(plan.posts)),
        *await bump(conn, "user", plan.deltas(plan.users)),
    ]
    # The cascade takes the account's own rows: posts (with their likes, comments and
    # counters), comments, likes, follows, sessions, media, stories, notifications...
    await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    await add_audit(
        conn,
        Audit(
            None,
            "ERASE",
            "USER",
            user_id,
            "account erased at its owner's request",
            {"requested_before": account["erase_after"].isoformat()},
        ),
    )
    await conn.execute(
        """
        INSERT INTO account_erasures
            (user_id, username, email, pseudonym, rooms, files, scrub_after)
        VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
        """,
        user_id,
        account["username"],
        account["email"],
        pseudonym,
        rooms,
        files,
        float(scrub_after_s),
    )
    plan.events.append(Event(ERASED_EVENT, str(user_id), {"user_id": str(user_id)}))
    await add_events(conn, plan.events)
    return Erased(user_id, counters, posts, len(plan.events))


async def pseudonymize(conn: asyncpg.Connection, user_id: uuid.UUID, pseudonym: uuid.UUID) -> int:
    """Analytics rows keep their figures (models train on them) under a random id that
    nothing links back to the account once its erasure row is gone."""
    done = await conn.execute(
        "UPDATE analytics_events SET user_id = $2 WHERE user_id = $1", user_id, pseudonym
    )
    return int(done.split()[-1])


async def _drop_contributions(
    conn: asyncpg.Connection, user_id: uuid.UUID, plan: _Plan
) -> list[uuid.UUID]:
    """Take the account's marks off other people's posts (likes, comments, shares), with
    the counters and events; returns the account's own posts, which leave by the cascade
    after their shares by others are detached."""
    own = await conn.fetch(
        """
        SELECT p.id, p.created_at, p.deleted_at, p.shared_post_id, o.author_id AS original_author
        FROM posts p LEFT JOIN posts o ON o.id = p.shared_post_id
        WHERE p.author_id = $1
        """,
        user_id,
    )
    own_ids = [r["id"] for r in own]
    author = str(user_id)
    for post in own:
        if post["deleted_at"] is None:
            plan.events.append(
                Event(
                    "content.post.deleted",
                    author,
                    {"post_id": str(post["id"]), "author_id": author, "reason": "erased"},
                )
            )
        original, original_author = post["shared_post_id"], post["original_author"]
        if post["deleted_at"] is None and original is not None and original_author != user_id:
            plan.posts[(original, "shares")] += 1
            plan.events.append(
                _on_post("social.share.deleted", original, user_id, original_author, post["id"])
            )
    likes = await conn.fetch(
        """
        DELETE FROM likes l USING posts p
        WHERE l.user_id = $1 AND p.id = l.post_id AND p.author_id <> $1
        RETURNING l.post_id, p.author_id
        """,
        user_id,
    )
    for like in likes:
        plan.posts[(like["post_id"], "likes")] += 1
        plan.events.append(
            _on_post("social.like.deleted", like["post_id"], user_id, like["author_id"])
        )
    comments = await conn.fetch(
        """
        DELETE FROM comments c USING posts p
        WHERE c.author_id = $1 AND p.id = c.post_id AND p.author_id <> $1
        RETURNING c.id, c.post_id, c.deleted_at, p.author_id
        """,
        user_id,
    )
    for comment in comments:
        if comment["deleted_at"] is None:
            plan.posts[(comment["post_id"], "comments")] += 1
            plan.events.append(
                _on_post(
                    "social.comment.deleted",
                    comment["post_id"],
                    user_id,
                    comment["author_id"],
                    comment_id=comment["id"],
                )
            )
    # Other people's shares of these posts stay, as shares of a post that is gone.
    await conn.execute(
        "UPDATE posts SET shared_post_id = NULL WHERE shared_post_id = ANY($1) AND author_id <> $2",
        own_ids,
        user_id,
    )
    return own_ids


def _on_post(
    kind: str,
    post_id: uuid.UUID,
    user_id: uuid.UUID,
    author_id: uuid.UUID,
    share_id: uuid.UUID | None = None,
    *,
    comment_id: uuid.UUID | None = None,
) -> Event:
    """A like, comment or share event, shaped as their own writers shape them."""
    payload = {"post_id": str(post_id), "user_id": str(user_id), "author_id": str(author_id)}
    if share_id is not None:
        payload["share_id"] = str(share_id)
    if comment_id is not None:
        payload["comment_id"] = str(comment_id)
    return Event(kind, str(post_id), payload)


async def _drop_follows(conn: asyncpg.Connection, user_id: uuid.UUID, plan: _Plan) -> None:
    rows = await conn.fetch(
        """
        DELETE FROM follows WHERE follower_id = $1 OR followee_id = $1
        RETURNING follower_id, followee_id
        """,
        user_id,
    )
    for row in rows:
        follower, followee = row["follower_id"], row["followee_id"]
        if follower == user_id:
            plan.users[(followee, "followers")] += 1
        else:
            plan.users[(follower, "following")] += 1
        plan.events.append(
            Event(
                "graph.follow.deleted",
                str(follower),
                {"follower_id": str(follower), "followee_id": str(followee)},
            )
        )


async def _anonymize_messages(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Messages stay in their rooms, from nobody; returns every room the account was in or
    wrote to, whose shards must forget it."""
    rows = await conn.fetch(
        """
        WITH written AS (
            UPDATE chat_messages
            SET sender_id = $2, media_ids = '{}', client_message_id = 'erased:' || id::text
            WHERE sender_id = $1
            RETURNING room_id
        )
        SELECT room_id FROM written
        UNION SELECT room_id FROM chat_members WHERE user_id = $1
        """,
        user_id,
        ERASED,
    )
    await conn.execute(
        "UPDATE chat_rooms SET created_by = $2 WHERE created_by = $1", user_id, ERASED
    )
    await conn.execute(
        """
        UPDATE chat_rooms SET direct_key = 'erased:' || id::text
        WHERE kind = 'direct' AND direct_key LIKE '%' || $1::text || '%'
        """,
        str(user_id),
    )
    return [r["room_id"] for r in rows]


async def _forget_in_moderation(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """Reports about the account go; in the others it is blanked (the audit log keeps the
    moderation record, which is append-only)."""
    await conn.execute("DELETE FROM reports WHERE target_type = 'USER' AND target_id = $1", user_id)
    await conn.execute("UPDATE reports SET resolved_by = NULL WHERE resolved_by = $1", user_id)
    await conn.execute(
        """
        UPDATE reports SET snapshot = jsonb_set(snapshot, '{sender_id}', to_jsonb($2::text))
        WHERE snapshot->>'sender_id' = $1::text
        """,
        str(user_id),
        str(ERASED),
    )
    await conn.execute("UPDATE posts SET deleted_by = NULL WHERE deleted_by = $1", user_id)
