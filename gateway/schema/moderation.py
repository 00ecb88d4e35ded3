"""GraphQL operations of reports and moderation: `report`, `moderationQueue`, `moderate`,
`moderationLog` (`gateway.services.moderation` has the rules).

Anyone signed in may report; moderators and admins see the queue and act; admins read
the audit log.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from gateway.errors import Forbidden
from gateway.limits.rate_limits import Budget
from gateway.schema.types import Connection, Edge, NovaInfo, User, load_user, parse_id
from gateway.services.moderation import Moderation, QueueItem, encode_bound
from storage.repositories.audit import AuditEntry
from storage.repositories.reports import ReportRecord

MODERATORS = frozenset({"moderator", "admin"})


@strawberry.enum
class ReportTargetType(enum.Enum):
    POST = "POST"
    COMMENT = "COMMENT"
    USER = "USER"
    MESSAGE = "MESSAGE"
    STORY = "STORY"


@strawberry.enum
class ReportReason(enum.Enum):
    SPAM = "SPAM"
    HARASSMENT = "HARASSMENT"
    HATE = "HATE"
    VIOLENCE = "VIOLENCE"
    SEXUAL = "SEXUAL"
    SELF_HARM = "SELF_HARM"
    OTHER = "OTHER"


@strawberry.enum
class ReportStatus(enum.Enum):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"


@strawberry.enum
class ModerationAction(enum.Enum):
    DISMISS = strawberry.enum_value("DISMISS", description="Close the reports, change nothing.")
    REMOVE = strawberry.enum_value("REMOVE", description="Hide a post, comment, message or story.")
    RESTORE = strawberry.enum_value(
        "RESTORE", description="Show a removed or held post, comment or story again."
    )
    SUSPEND = strawberry.enum_value(
        "SUSPEND", description="Suspend an account (durationHours, or indefinitely)."
    )
    UNSUSPEND = strawberry.enum_value("UNSUSPEND", description="Lift a suspension.")
    WARN = strawberry.enum_value("WARN", description="Record a warning to an account.")


@strawberry.enum
class ModerationState(enum.Enum):
    VISIBLE = "VISIBLE"
    REMOVED = "REMOVED"
    HELD = strawberry.enum_value("HELD", description="Held by the blocklist for review.")
    SUSPENDED = strawberry.enum_value(
        "SUSPENDED", description="An account suspended, or content hidden with its author."
    )
    DELETED = strawberry.enum_value("DELETED", description="Deleted by its author.")
    GONE = strawberry.enum_value("GONE", description="No longer exists.")


@strawberry.input
class ReportInput:
    target_type: ReportTargetType
    target_id: strawberry.ID
    reason: ReportReason
    note: str | None = strawberry.field(default=None, description="Up to 1,000 characters.")


@strawberry.type
class Report:
    id: strawberry.ID
    target_type: ReportTargetType
    target_id: strawberry.ID
    reason: ReportReason
    note: str | None
    status: ReportStatus
    created_at: datetime

    @classmethod
    def from_record(cls, record: ReportRecord) -> Report:
        return cls(
            id=strawberry.ID(str(record.id)),
            target_type=ReportTargetType(record.target_type),
            target_id=strawberry.ID(str(record.target_id)),
            reason=ReportReason(record.reason),
            note=record.note,
            status=ReportStatus.OPEN if record.resolved_at is None else ReportStatus.RESOLVED,
            created_at=record.created_at,
        )


@strawberry.type(description="A reported message as its first report kept it.")
class ReportedMessage:
    id: strawberry.ID
    room_id: strawberry.ID
    seq: int
    text: str
    sender_id: strawberry.ID
    media_ids: list[strawberry.ID]
    created_at: datetime


@strawberry.type(description="What moderators see of a target.")
class ModerationQueueItem:
    target_type: ReportTargetType
    target_id: strawberry.ID
    report_count: int
    reasons: list[ReportReason] = strawberry.field(description="Distinct, alphabetical.")
    first_reported_at: datetime
    last_reported_at: datetime
    state: ModerationState
    text: str | None = strawberry.field(
        description="The post, comment, story or message text; for a USER, the profile."
    )
    media_ids: list[strawberry.ID]
    suspended_until: datetime | None = strawberry.field(
        description="For a suspended USER: when it ends (year 9999: indefinitely)."
    )
    message: ReportedMessage | None = strawberry.field(
        description="For a MESSAGE: the snapshot its reports keep."
    )
    author_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="Who wrote it (for a USER: the account itself).")
    async def author(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.author_id) if self.author_id else None

    @classmethod
    def of(cls, item: QueueItem) -> ModerationQueueItem:
        row, target = item.row, item.target
        snapshot = row.snapshot
        message = None
        text = target.text
        media = [strawberry.ID(str(m)) for m in target.media_ids]
        if row.target_type == "MESSAGE" and snapshot is not None:
            message = ReportedMessage(
                id=strawberry.ID(snapshot["message_id"]),
                room_id=strawberry.ID(snapshot["room_id"]),
                seq=snapshot["seq"],
                text=snapshot["text"],
                sender_id=strawberry.ID(snapshot["sender_id"]),
                media_ids=[strawberry.ID(m) for m in snapshot["media_ids"]],
                created_at=datetime.fromisoformat(snapshot["created_at"]),
            )
            text = snapshot["text"]
            media = list(message.media_ids)
        return cls(
            target_type=ReportTargetType(row.target_type),
            target_id=strawberry.ID(str(row.target_id)),
            report_count=row.reports,
            reasons=[ReportReason(r) for r in row.reasons],
            first_reported_at=row.first_at,
            last_reported_at=row.last_at,
            state=ModerationState[target.state],
            text=text,
            media_ids=media,
            suspended_until=target.suspended_until,
            message=message,
            author_id=target.author_id,
        )


@strawberry.input
class ModerateInput:
    target_type: ReportTargetType
    target_id: strawberry.ID
    action: ModerationAction
    note: str | None = strawberry.field(default=None, description="Why; kept in the audit log.")
    duration_hours: int | None = strawberry.field(
        default=None, description="SUSPEND only: how long; none = indefinitely."
    )


@strawberry.type
class ModerationResult:
    target_type: ReportTargetType
    target_id: strawberry.ID
    action: ModerationAction
    state: ModerationState
    resolved_reports: int = strawberry.field(description="Open reports this action closed.")
    suspended_until: datetime | None
    item: ModerationQueueItem | None = strawberry.field(
        description="The target as the queue now shows it (null if it was never reported)."
    )


@strawberry.type
class AuditLogEntry:
    id: strawberry.ID
    at: datetime
    action: str = strawberry.field(
        description="A moderation action, or ROLE_GRANTED / ROLE_REVOKED."
    )
    target_type: str
    target_id: strawberry.ID | None
    note: str | None
    details: JSON
    actor_id: strawberry.ID | None = strawberry.field(
        description="Who; null for an operator at the command line."
    )

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditLogEntry:
        return cls(
            id=strawberry.ID(str(entry.id)),
            at=entry.at,
            action=entry.action,
            target_type=entry.target_type,
            target_id=strawberry.ID(str(entry.target_id)) if entry.target_id else None,
            note=entry.note,
            details=cast(JSON, entry.details),
            actor_id=strawberry.ID(str(entry.actor_id)) if entry.actor_id else None,
        )


def _service(info: NovaInfo) -> Moderation:
    return info.context.runtime.moderation


def _require(info: NovaInfo, roles: frozenset[str]) -> uuid.UUID:
    claims = info.context.require_user()
    if not roles & set(claims.roles):
        raise Forbidden(f"only {' or '.join(sorted(roles))} may do this")
    return claims.user_id


def report_budget(info: NovaInfo) -> Budget:
    s = info.context.runtime.settings
    return Budget("reports", s.rate_reports_per_s, s.rate_reports_burst)


@strawberry.type
class ModerationQuery:
    @strawberry.field(
        description="Reported targets (moderators and admins): most severe reason first "
        "(SELF_HARM, VIOLENCE; then HATE, HARASSMENT, SEXUAL; then SPAM, OTHER), then "
        "oldest first report."
    )
    async def moderation_queue(
        self,
        info: NovaInfo,
        status: ReportStatus = ReportStatus.OPEN,
        first: int = 20,
        after: str | None = None,
    ) -> Connection[ModerationQueueItem]:
        _require(info, MODERATORS)
        items, more = await _service(info).queue(
            open_=status is ReportStatus.OPEN, first=first, after=after
        )
        edges = [Edge(cursor=encode_bound(i.row), node=ModerationQueueItem.of(i)) for i in items]
        return Connection.of(edges, more)

    @strawberry.field(description="Every moderation action and role change, newest first (admins).")
    async def moderation_log(
        self, info: NovaInfo, first: int = 50, after: str | None = None
    ) -> Connection[AuditLogEntry]:
        _require(info, frozenset({"admin"}))
        entries, more = await _service(info).log(first, after)
        edges = [Edge(cursor=str(e.id), node=AuditLogEntry.of(e)) for e in entries]
        return Connection.of(edges, more)


@strawberry.type
class ModerationMutation:
    @strawberry.mutation(
        description="Report a post, comment, user, message (of a room you are in) or story. "
        "One open report per target: a second one is BAD_USER_INPUT."
    )
    async def report(self, info: NovaInfo, input: ReportInput) -> Report:
        reporter = info.context.require_user().user_id
        await info.context.runtime.charge(report_budget(info), str(reporter))
        record = await _service(info).report(
            reporter,
            input.target_type.value,
            parse_id(input.target_id, "targetId"),
            input.reason.value,
            input.note,
        )
        return Report.from_record(record)

    @strawberry.mutation(description="Act on a reported target (moderators and admins).")
    async def moderate(self, info: NovaInfo, input: ModerateInput) -> ModerationResult:
        moderator = _require(info, MODERATORS)
        target = parse_id(input.target_id, "targetId")
        service = _service(info)
        outcome = await service.moderate(
            moderator,
            input.target_type.value,
            target,
            input.action.name,
            note=input.note,
            duration_hours=input.duration_hours,
        )
        item = await service.item(input.target_type.value, target)
        return ModerationResult(
            target_type=input.target_type,
            target_id=strawberry.ID(str(target)),
            action=input.action,
            state=ModerationState[outcome.state],
            resolved_reports=outcome.resolved_reports,
            suspended_until=outcome.suspended_until,
            item=ModerationQueueItem.of(item) if item else None,
        )
