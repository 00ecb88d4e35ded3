"""Bulk data for benchmarks, inserted with SQL: users, follows, sessions with real tokens.

No Argon2 and no outbox for the bulk: benchmarks measure the paths they name, and the
gateway authenticates these users like any other (real sessions, real signed tokens).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


async def insert_users(db: Any, count: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    async with db.transaction() as conn:
        await conn.copy_records_to_table(
            "users",
            records=[(i, f"bf_{i.hex[:20]}", f"bf_{i.hex[:20]}@example.com", "-") for i in ids],
            columns=["id", "username", "email", "password_hash"],
        )
    return ids


async def follow_all(db: Any, followers: list[uuid.UUID], followees: list[uuid.UUID]) -> None:
    records = [(f, e) for f in followers for e in followees]
    async with db.transaction() as conn:
        await conn.copy_records_to_table(
            "follows", records=records, columns=["follower_id", "followee_id"]
        )
        counts: dict[uuid.UUID, list[int]] = {}
        for f, e in records:
            counts.setdefault(f, [0, 0])[1] += 1
            counts.setdefault(e, [0, 0])[0] += 1
        await conn.executemany(
            """
            INSERT INTO user_counters (user_id, followers, following, version)
            VALUES ($1, $2, $3, 1)
            ON CONFLICT (user_id) DO UPDATE SET
                followers = user_counters.followers + EXCLUDED.followers,
                following = user_counters.following + EXCLUDED.following,
                version = user_counters.version + 1
            """,
            [(u, c[0], c[1]) for u, c in counts.items()],
        )


async def issue_tokens(db: Any, settings: Any, users: list[uuid.UUID]) -> list[str]:
    """A session and a signed access token (valid an hour) per user."""
    from gateway.auth.tokens import KeyRing
    from storage.secrets import Sealer

    ring = KeyRing(db, Sealer.from_settings(settings), settings)
    await ring.load()
    sessions = [uuid.uuid4() for _ in users]
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO auth_sessions (id, user_id, expires_at) VALUES ($1, $2, $3)",
            [
                (s, u, datetime.now(UTC) + timedelta(hours=1))
                for s, u in zip(sessions, users, strict=True)
            ],
        )
    return [ring.issue(u, ["user"], s).token for u, s in zip(users, sessions, strict=True)]
