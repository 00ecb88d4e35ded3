"""Profiles and blocks: the parts of a user that other users see or are kept away from."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from actors.counter_client import CounterClient
from gateway.services.relations import ViewerRelations
from gateway.services.users import UserCache
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.outbox.rows import add_event
from storage.repositories.counters import CounterRow
from storage.repositories.graph import unfollow_both_ways
from storage.repositories.users import USER_COLUMNS, UserRecord
from storage.rows import from_row

MAX_DISPLAY_NAME = 80
MAX_BIO = 500
MAX_AVATAR_URL = 2048
MAX_PAGE = 100


@dataclass(frozen=True)
class ProfileChanges:
    """Fields to change; `None` clears a field, a field absent from `fields` is kept."""

    fields: dict[str, str | None]


def clean_profile(
    display_name: str | None, bio: str | None, avatar_url: str | None, given: set[str]
) -> ProfileChanges:
    """Validate the fields the client sent (`given`); blank strings clear."""
    fields: dict[str, str | None] = {}
    if "display_name" in given:
        value = (display_name or "").strip() or None
        if value is not None and len(value) > MAX_DISPLAY_NAME:
            raise InvalidInput(f"displayName must be at most {MAX_DISPLAY_NAME} characters")
        if value is not None and any(ord(c) < 32 for c in value):
            raise InvalidInput("displayName must not contain control characters")
        fields["display_name"] = value
    if "bio" in given:
        value = (bio or "").strip() or None
        if value is not None and len(value) > MAX_BIO:
            raise InvalidInput(f"bio must be at most {MAX_BIO} characters")
        fields["bio"] = value
    if "avatar_url" in given:
        value = (avatar_url or "").strip() or None
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in {"https", "http"} or not parts.netloc:
                raise InvalidInput("avatarUrl must be an http(s) URL")
            if len(value) > MAX_AVATAR_URL:
                raise InvalidInput(f"avatarUrl must be at most {MAX_AVATAR_URL} characters")
        fields["avatar_url"] = value
    return ProfileChanges(fields)


@dataclass(frozen=True)
class BlockedPage:
    users: list[tuple[str, uuid.UUID]]  # (cursor, blocked user id), newest first
    has_next_page: bool


def encode_cursor(created_at: datetime, user_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{user_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, user = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(user)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("after is not a valid cursor") from exc


def page_size(first: int | None) -> int:
    if first is None:
        return 20
    if not 0 <= first <= MAX_PAGE:
        raise InvalidInput(f"first must be between 0 and {MAX_PAGE}")
    return first


class Profiles:
    def __init__(
        self,
        db: Database,
        users: UserCache,
        counters: CounterClient,
        relations: ViewerRelations,
    ) -> None:
        self._db = db
        self._users = users
        self._counters = counters
        self._relations = relations

    async def find_by_username(self, username: str) -> uuid.UUID | None:
        user_id: uuid.UUID | None = await self._db.fetchval(
            "SELECT id FROM users WHERE lower(username) = lower($1)", username.strip()
        )
        return user_id

    async def update(self, user_id: uuid.UUID, changes: ProfileChanges) -> UserRecord:
        if not changes.fields:
            async with self._db.connection() as conn:
                row = await conn.fetchrow(
                    f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id
                )
            if row is None:
                raise NotFound("account no longer exists")
            return from_row(UserRecord, row)
        columns = list(changes.fields)  # only the three known names reach this point
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(columns))
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                UPDATE users SET {assignments}, version = version + 1, updated_at = now()
                WHERE id = $1 RETURNING {USER_COLUMNS}
                """,
                user_id,
                *changes.fields.values(),
            )
            if row is None:
                raise NotFound("account no longer exists")
            await add_event(
                conn,
                Event(
                    "user.profile.updated",
                    str(user_id),
                    {"user_id": str(user_id), "changed": columns, "version": row["version"]},
                ),
            )
        user = from_row(UserRecord, row)
        await self._users.changed([user])
        return user

    async def block(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        if blocker == blocked:
            raise InvalidInput("you cannot block yourself")
        async with self._db.transaction() as conn:
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", blocked
            ):
                raise NotFound("no such user")
            inserted = await conn.fetchval(
                """
                INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)
                ON CONFLICT DO NOTHING RETURNING true
                """,
                blocker,
                blocked,
            )
            rows: list[CounterRow] = []
            if inserted:
                await add_event(
                    conn,
                    Event(
                        "graph.block.created",
                        str(blocker),
                        {"blocker_id": str(blocker), "blocked_id": str(blocked)},
                    ),
                )
                # Neither follows the other any more: blocks and follows exclude each other.
                rows = await unfollow_both_ways(conn, blocker, blocked)
        if inserted:
            await self._relations.blocks_changed(blocker, blocked)
            await self._relations.follows_changed([blocker, blocked], rows)
        await self._counters.observe(rows)
        return True

    async def unblock(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        async with self._db.transaction() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2 RETURNING true",
                blocker,
                blocked,
            )
            if deleted:
                await add_event(
                    conn,
                    Event(
                        "graph.block.deleted",
                        str(blocker),
                        {"blocker_id": str(blocker), "blocked_id": str(blocked)},
                    ),
                )
        if deleted:
            await self._relations.blocks_changed(blocker, blocked)
        return True

    async def has_blocked(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        found: bool = await self._db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)",
            blocker,
            blocked,
        )
        return found

    async def blocked_users(
        self, blocker: uuid.UUID, first: int | None, after: str | None
    ) -> BlockedPage:
        limit = page_size(first)
        since = decode_cursor(after) if after else None
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT blocked_id, created_at FROM blocks
                WHERE blocker_id = $1
                  AND ($2::timestamptz IS NULL OR (created_at, blocked_id) < ($2, $3::uuid))
                ORDER BY created_at DESC, blocked_id DESC
                LIMIT $4
                """,
                blocker,
                since[0] if since else None,
                since[1] if since else None,
                limit + 1,
            )
        page = [
            (encode_cursor(row["created_at"], row["blocked_id"]), row["blocked_id"])
            for row in rows[:limit]
        ]
        return BlockedPage(page, len(rows) > limit)
