"""Reports, the moderation queue and moderators' actions.

Each action commits in one transaction: the target's new state in PostgreSQL (so every
read of PostgreSQL sees it at once), its outbox events, the resolution of the target's
open reports and an audit row. Derived stores follow from the events: a post removed or
hidden with its suspended author leaves as `content.post.deleted` (the fan-out consumer
takes it out of timelines), and comes back as `content.post.created` (fanned out again).
Suspension revokes the account's sessions right after the commit, which ends its tokens
and closes its sockets on every replica.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from actors.chat_client import ChatClient
from gateway.auth.revocation import Revocations
from gateway.services.posts import Posts, post_event
from gateway.services.users import UserCache
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.repositories import moderation as acts
from storage.repositories.audit import Audit, AuditEntry, AuditStore
from storage.repositories.counters import CounterRow
from storage.repositories.moderation import Changed, ModerationStore, TargetState
from storage.repositories.reports import QueueBound, QueueRow, ReportRecord, ReportStore
from storage.repositories.users import UserStore

MAX_NOTE = 1_000
MAX_SUSPENSION_HOURS = 24 * 365 * 10
CONTENT = ("POST", "COMMENT", "MESSAGE", "STORY")
ACTIONS_FOR = {
    "REMOVE": CONTENT,
    "RESTORE": ("POST", "COMMENT", "STORY"),
    "SUSPEND": ("USER",),
    "UNSUSPEND": ("USER",),
    "WARN": ("USER",),
    "DISMISS": ("POST", "COMMENT", "USER", "MESSAGE", "STORY"),
}
ACTION_TOPIC = "moderation.action"


@dataclass(frozen=True)
class QueueItem:
    row: QueueRow
    target: TargetState


@dataclass(frozen=True)
class Outcome:
    """What `moderate` did."""

    target_type: str
    target_id: uuid.UUID
    action: str
    resolved_reports: int
    state: str
    suspended_until: datetime | None = None


def check_note(note: str | None) -> str | None:
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInput(f"note must be at most {MAX_NOTE} characters")
    return note or None


def encode_bound(row: QueueRow) -> str:
    return f"{row.severity}|{row.first_at.isoformat()}|{row.target_id}"


def decode_bound(cursor: str) -> QueueBound:
    try:
        severity, first_at, target_id = cursor.split("|")
        return int(severity), datetime.fromisoformat(first_at), uuid.UUID(target_id)
    except ValueError as exc:
        raise InvalidInput("after is not a cursor of this list") from exc


class Moderation:
    """One per replica."""

    def __init__(
        self,
        db: Database,
        *,
        posts: Posts,
        chat: ChatClient,
        revocations: Revocations,
        users: UserCache,
    ) -> None:
        self._reports = ReportStore(db)
        self._store = ModerationStore(db)
        self._audit = AuditStore(db)
        self._user_rows = UserStore(db)
        self._posts = posts
        self._chat = chat
        self._revocations = revocations
        self._users = users

    # -- reports ---------------------------------------------------------------------

    async def report(
        self,
        reporter: uuid.UUID,
        target_type: str,
        target_id: uuid.UUID,
        reason: str,
        note: str | None,
    ) -> ReportRecord:
        return await self._reports.add(reporter, target_type, target_id, reason, check_note(note))

    async def queue(
        self, *, open_: bool, first: int, after: str | None
    ) -> tuple[list[QueueItem], bool]:
        if not 1 <= first <= 100:
            raise InvalidInput("first must be between 1 and 100")
        bound = decode_bound(after) if after else None
        rows = await self._reports.queue(open_=open_, after=bound, limit=first + 1)
        targets = await asyncio.gather(
            *(self._store.target(row.target_type, row.target_id) for row in rows[:first])
        )
        items = [QueueItem(row, target) for row, target in zip(rows, targets, strict=False)]
        return items, len(rows) > first

    async def item(self, target_type: str, target_id: uuid.UUID) -> QueueItem | None:
        row = await self._reports.group(target_type, target_id)
        if row is None:
            return None
        return QueueItem(row, await self._store.target(target_type, target_id))

    # -- actions ---------------------------------------------------------------------

    async def moderate(
        self,
        moderator: uuid.UUID,
        target_type: str,
        target_id: uuid.UUID,
        action: str,
        *,
        note: str | None,
        duration_hours: int | None,
    ) -> Outcome:
        if target_type not in ACTIONS_FOR[action]:
            allowed = ", ".join(ACTIONS_FOR[action])
            raise InvalidInput(f"{action} applies to {allowed}, not {target_type}")
        if duration_hours is not None and (
            action != "SUSPEND" or not 1 <= duration_hours <= MAX_SUSPENSION_HOURS
        ):
            raise InvalidInput(f"durationHours: 1-{MAX_SUSPENSION_HOURS}, for SUSPEND only")
        if target_type == "USER" and target_id == moderator:
            raise InvalidInput("you cannot moderate your own account")
        note = check_note(note)
        until = None
        if duration_hours is not None:
            until = datetime.now(UTC) + timedelta(hours=duration_hours)
        details: dict[str, Any] = {}
        if until is not None:
            details["until"] = until.isoformat()
        if target_type == "MESSAGE" and action == "REMOVE":
            details.update(await self._remove_message(target_id))
        change: acts.Change
        if action == "DISMISS":  # whatever became of the target
            change = acts.unchanged
        elif action == "WARN" or target_type == "MESSAGE":
            change = acts.existing(target_type, target_id)
        else:
            change = acts.change_for(target_type, target_id, action, moderator, until)
        audit = Audit(moderator, action, target_type, target_id, note, details)
        changed, resolved = await self._store.act(
            change,
            events=lambda c: self._events(c, audit, action),
            audit=audit,
            resolution=action,
        )
        if not changed.found:
            raise NotFound(f"no such {target_type.lower()}")
        await self._after(target_type, target_id, changed)
        state = await self._store.target(target_type, target_id)
        return Outcome(target_type, target_id, action, resolved, state.state, state.suspended_until)

    async def _remove_message(self, message_id: uuid.UUID) -> dict[str, Any]:
        """Tombstone the message through its room's chat shard, before the action's
        transaction (the shard writes its own `chat.message.deleted`)."""
        row = await self._reports.group("MESSAGE", message_id)
        if row is None or row.snapshot is None:
            raise NotFound("no report names this message")
        room = uuid.UUID(row.snapshot["room_id"])
        sender = uuid.UUID(row.snapshot["sender_id"])
        await self._chat.remove(room, message_id, sender)
        return {"room_id": str(room), "seq": row.snapshot["seq"]}

    def _events(self, changed: Changed, audit: Audit, action: str) -> list[Event]:
        """Posts that left view leave timelines; those back in view are fanned out again;
        and the action itself, for whoever follows moderation."""
        kind = "content.post.deleted" if action in ("REMOVE", "SUSPEND") else "content.post.created"
        events = [post_event(kind, post) for post in changed.posts]
        events.append(
            Event(
                ACTION_TOPIC,
                str(audit.target_id),
                {
                    "action": action,
                    "target_type": audit.target_type,
                    "target_id": str(audit.target_id),
                    "moderator_id": str(audit.actor_id) if audit.actor_id else None,
                    "note": audit.note,
                    "details": audit.details,
                },
            )
        )
        return events

    async def _after(self, target_type: str, target_id: uuid.UUID, changed: Changed) -> None:
        """Effects outside PostgreSQL, once committed: caches, counter shards, tokens."""
        await self._posts.forget([post.id for post in changed.posts])
        if target_type == "POST":
            await self._posts.forget([target_id])
        await self._observe(changed.counters)
        if changed.sessions:
            await self._revocations.revoke_sessions(changed.sessions)
        if target_type == "USER":
            await self._users.changed(await self._user_rows.fetch([target_id]))

    async def _observe(self, rows: list[CounterRow]) -> None:
        if rows:
            await self._posts.observe_counters(rows)

    # -- the audit log ---------------------------------------------------------------

    async def log(self, first: int, after: str | None) -> tuple[list[AuditEntry], bool]:
        if not 1 <= first <= 100:
            raise InvalidInput("first must be between 1 and 100")
        try:
            before = int(after) if after else None
        except ValueError as exc:
            raise InvalidInput("after is not a cursor of this list") from exc
        rows = await self._audit.page(before, first + 1)
        return rows[:first], len(rows) > first

    async def lift_ended(self, user_id: uuid.UUID) -> None:
        """Lift a suspension whose time is up, and bring back what it hid: at the account's
        next login (an audit row with no actor)."""
        audit = Audit(None, "UNSUSPEND", "USER", user_id, "the suspension ended", {})

        async def change(conn: Any) -> Changed:
            return await acts.unsuspend_user(conn, user_id, ended_only=True)

        changed, _ = await self._store.act(
            change,
            events=lambda c: self._events(c, audit, "UNSUSPEND"),
            audit=audit,
            resolution="UNSUSPEND",
        )
        if changed.found:
            await self._after("USER", user_id, changed)
