"""Notification preferences and the consumer's progress, for the stack tests."""

from __future__ import annotations

from typing import Any

from storage.db import Database
from tests.conftest import wait_until
from tests.support.social import Member, call

WAIT_S = 30
PREFERENCES_FIELDS = """
kinds { kind inApp email } emailDigest mutedUsers { id } mutedRooms { id }
"""
PREFERENCES = f"query {{ notificationPreferences {{ {PREFERENCES_FIELDS} }} }}"
UPDATE = f"""
mutation($input: UpdateNotificationPreferencesInput!) {{
  updateNotificationPreferences(input: $input) {{ {PREFERENCES_FIELDS} }}
}}
"""
MUTE_USER = f"mutation($id: ID!) {{ muteUser(userId: $id) {{ {PREFERENCES_FIELDS} }} }}"
UNMUTE_USER = f"mutation($id: ID!) {{ unmuteUser(userId: $id) {{ {PREFERENCES_FIELDS} }} }}"
MUTE_ROOM = f"mutation($id: ID!) {{ muteRoom(roomId: $id) {{ {PREFERENCES_FIELDS} }} }}"
UNMUTE_ROOM = f"mutation($id: ID!) {{ unmuteRoom(roomId: $id) {{ {PREFERENCES_FIELDS} }} }}"
KINDS_OF = "query { notifications(first: 50) { edges { node { kind actor { id } } } } }"
COMMENT = 'mutation($id: ID!) { createComment(postId: $id, text: "nice") { id } }'


async def preferences(http_url: str, member: Member) -> dict[str, Any]:
    found: dict[str, Any] = (await call(http_url, member, PREFERENCES)).ok()[
        "notificationPreferences"
    ]
    return found


def channels(found: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    """kind → (inApp, email)."""
    return {k["kind"]: (k["inApp"], k["email"]) for k in found["kinds"]}


async def inbox_kinds(http_url: str, member: Member) -> list[tuple[str, str | None]]:
    """(kind, actor id) of each notification, newest first."""
    edges = (await call(http_url, member, KINDS_OF)).ok()["notifications"]["edges"]
    return [(e["node"]["kind"], (e["node"]["actor"] or {}).get("id")) for e in edges]


async def consumed(db: Database, event_type: str, count: int = 1, **payload: str) -> None:
    """Wait until the notifications consumer has applied `count` outbox events matching
    `payload`: whatever they notify is then in the inbox."""

    async def done() -> bool:
        async with db.connection() as conn:
            found: int = await conn.fetchval(
                """
                SELECT count(*) FROM outbox o JOIN processed_events p
                  ON p.event_id = o.event_id AND p.consumer = 'notifications'
                WHERE o.type = $1 AND o.payload @> $2::jsonb
                """,
                event_type,
                payload,
            )
        return found >= count

    await wait_until(done, timeout_s=WAIT_S, message=f"notifications applied {event_type}")
