"""GraphQL operations on your own account's security: the sessions signed in, ending one,
and changing the password (`gateway.auth.sessions` does the work)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gateway.schema.types import Connection, Edge, NovaInfo, parse_id
from gateway.services.profiles import decode_cursor, encode_cursor, page_size
from storage.repositories.sessions import SessionRecord


@strawberry.type(description="One sign-in: a device or browser holding a refresh token.")
class Session:
    id: strawberry.ID
    created_at: datetime
    last_used_at: datetime = strawberry.field(
        description="When it last signed in or refreshed its access token."
    )
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = strawberry.field(description="The session of the token asking.")

    @classmethod
    def from_record(cls, record: SessionRecord, *, current: bool) -> Session:
        return cls(
            id=strawberry.ID(str(record.id)),
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            expires_at=record.expires_at,
            user_agent=record.user_agent,
            ip=record.ip,
            current=current,
        )


@strawberry.type(description="A scheduled erasure of your account.")
class AccountDeletion:
    requested_at: datetime
    erase_after: datetime = strawberry.field(
        description="When the account and everything it made is erased; signing in before "
        "then cancels the deletion."
    )


@strawberry.type
class AccountQuery:
    @strawberry.field(description="Your live sessions, newest sign-in first.")
    async def sessions(
        self, info: NovaInfo, first: int | None = 20, after: str | None = None
    ) -> Connection[Session]:
        claims = info.context.require_user()
        limit = page_size(first)
        before = decode_cursor(after) if after else None
        rows = await info.context.runtime.sessions.active(claims.user_id, limit, before)
        edges = [
            Edge(
                cursor=encode_cursor(r.created_at, r.id),
                node=Session.from_record(r, current=r.id == claims.session_id),
            )
            for r in rows[:limit]
        ]
        return Connection.of(edges, len(rows) > limit)


@strawberry.type
class AccountMutation:
    @strawberry.mutation(
        description="Sign one of your sessions out: its refresh and access tokens stop "
        "working at once. False if it had already ended; another user's is NOT_FOUND."
    )
    async def revoke_session(self, info: NovaInfo, id: strawberry.ID) -> bool:
        claims = info.context.require_user()
        return await info.context.runtime.sessions.revoke_one(claims.user_id, parse_id(id))

    @strawberry.mutation(
        description="Change your password, giving the current one; every other session is "
        "signed out and the account's address gets a notice."
    )
    async def change_password(
        self, info: NovaInfo, current_password: str, new_password: str
    ) -> bool:
        ctx = info.context
        claims = ctx.require_user()
        # The current password is a secret to guess: attempts count against the account.
        await ctx.runtime.charge(ctx.runtime.budgets.login, f"password:{claims.user_id}")
        await ctx.runtime.sessions.change_password(claims, current_password, new_password)
        return True

    @strawberry.mutation(
        description="Delete your account, giving your password: every session ends now, "
        "and after the grace period (14 days) the account is erased with its posts, "
        "comments, likes, follows, media and personal data; messages stay in their rooms "
        "as from a deleted account. Signing in before then cancels it."
    )
    async def delete_my_account(self, info: NovaInfo, password: str) -> AccountDeletion:
        ctx = info.context
        claims = ctx.require_user()
        await ctx.runtime.charge(ctx.runtime.budgets.login, f"password:{claims.user_id}")
        request = await ctx.runtime.deletions.request(claims, password)
        return AccountDeletion(requested_at=request.requested_at, erase_after=request.erase_after)
