"""GraphQL operations of accounts and profiles: registering and signing in, tokens, password
reset and email verification (`gateway.auth.identity` does the work), your profile, other
users, and blocks (`gateway.services.profiles`)."""

from __future__ import annotations

import uuid

import strawberry

from gateway.auth.identity import AuthResult
from gateway.errors import user_error
from gateway.schema.types import Connection, Edge, NovaInfo, User, load_user, parse_id
from gateway.services.profiles import clean_profile
from storage.errors import InvalidInput


@strawberry.type
class AuthPayload:
    access_token: str
    refresh_token: str
    expires_in: int = strawberry.field(description="Seconds until the access token expires.")
    user: User
    deletion_cancelled: bool = strawberry.field(
        description="This sign-in cancelled the account's pending deletion."
    )

    @classmethod
    def from_result(cls, result: AuthResult) -> AuthPayload:
        return cls(
            access_token=result.access_token,
            refresh_token=result.refresh_token,
            expires_in=result.expires_in,
            user=User.from_record(result.user),
            deletion_cancelled=result.deletion_cancelled,
        )


@strawberry.input
class RegisterInput:
    email: str
    username: str
    password: str


@strawberry.input
class LoginInput:
    login: str = strawberry.field(description="Email or username.")
    password: str


@strawberry.input
class UpdateProfileInput:
    """Omitted fields are kept; null or an empty string clears a field."""

    display_name: str | None = strawberry.UNSET
    bio: str | None = strawberry.UNSET
    avatar_url: str | None = strawberry.UNSET


@strawberry.type
class IdentityQuery:
    @strawberry.field(description="The signed-in user.")
    async def me(self, info: NovaInfo) -> User:
        claims = info.context.require_user()
        user = await load_user(info, claims.user_id)
        if user is None:
            raise user_error("your account no longer exists", "UNAUTHENTICATED")
        return user

    @strawberry.field(description="A user by id or by username (exactly one of them).")
    async def user(
        self, info: NovaInfo, id: strawberry.ID | None = None, username: str | None = None
    ) -> User | None:
        if (id is None) == (username is None):
            raise InvalidInput("give exactly one of id or username")
        runtime = info.context.runtime
        if id is not None:
            user_id: uuid.UUID | None = parse_id(id)
        else:
            user_id = await runtime.profiles.find_by_username(username or "")
        if user_id is None:
            return None
        viewer = info.context.viewer_id
        # Someone who blocked you is invisible to you.
        if (
            viewer is not None
            and viewer != user_id
            and await runtime.profiles.has_blocked(user_id, viewer)
        ):
            return None
        return await load_user(info, user_id)

    @strawberry.field(description="Users you blocked, most recent first.")
    async def blocked_users(
        self, info: NovaInfo, first: int | None = 20, after: str | None = None
    ) -> Connection[User]:
        claims = info.context.require_user()
        page = await info.context.runtime.profiles.blocked_users(claims.user_id, first, after)
        records = await info.context.users.load_many([user_id for _, user_id in page.users])
        edges = [
            Edge(cursor=cursor, node=User.from_record(record))
            for (cursor, _), record in zip(page.users, records, strict=True)
            if record is not None
        ]
        return Connection.of(edges, page.has_next_page)


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(description="Create an account; a verification mail follows.")
    async def register(self, info: NovaInfo, input: RegisterInput) -> AuthPayload:
        ctx = info.context
        result = await ctx.runtime.identity.register(
            input.email, input.username, input.password, ctx.client
        )
        return AuthPayload.from_result(result)

    @strawberry.mutation(description="Sign in with email or username and password.")
    async def login(self, info: NovaInfo, input: LoginInput) -> AuthPayload:
        ctx = info.context
        runtime = ctx.runtime

        # Attempts per account slow password guessing against one account from many IPs.
        async def charge(subject: str) -> None:
            await runtime.charge(runtime.budgets.login, f"login:{subject}")

        result = await runtime.identity.login(
            input.login, input.password, ctx.client, charge=charge
        )
        return AuthPayload.from_result(result)

    @strawberry.mutation(description="Exchange a refresh token for a new pair (it rotates).")
    async def refresh_token(self, info: NovaInfo, refresh_token: str) -> AuthPayload:
        result = await info.context.runtime.identity.refresh(refresh_token)
        return AuthPayload.from_result(result)

    @strawberry.mutation(description="End the session of this refresh token.")
    async def logout(self, info: NovaInfo, refresh_token: str) -> bool:
        return await info.context.runtime.identity.logout(refresh_token, info.context.claims)

    @strawberry.mutation(description="Mail a reset link if the account exists; always true.")
    async def request_password_reset(self, info: NovaInfo, email: str) -> bool:
        runtime = info.context.runtime

        async def charge(subject: str) -> None:
            await runtime.charge(runtime.budgets.login, f"reset:{subject}")

        await runtime.identity.request_password_reset(email, charge=charge)
        return True

    @strawberry.mutation(description="Set a new password with a reset token; ends all sessions.")
    async def reset_password(self, info: NovaInfo, token: str, new_password: str) -> bool:
        await info.context.runtime.identity.reset_password(token, new_password)
        return True

    @strawberry.mutation(description="Confirm an email address with the mailed token.")
    async def verify_email(self, info: NovaInfo, token: str) -> bool:
        await info.context.runtime.identity.verify_email(token)
        return True

    @strawberry.mutation(description="Mail a new verification link; false if already verified.")
    async def resend_verification_email(self, info: NovaInfo) -> bool:
        ctx = info.context
        claims = ctx.require_user()
        await ctx.runtime.charge(ctx.runtime.budgets.login, f"verify:{claims.user_id}")
        return await ctx.runtime.identity.request_email_verification(claims.user_id)

    @strawberry.mutation(description="Change your display name, bio or avatar.")
    async def update_profile(self, info: NovaInfo, input: UpdateProfileInput) -> User:
        claims = info.context.require_user()
        given = {
            name
            for name in ("display_name", "bio", "avatar_url")
            if getattr(input, name) is not strawberry.UNSET
        }
        changes = clean_profile(
            _given(input.display_name), _given(input.bio), _given(input.avatar_url), given
        )
        record = await info.context.runtime.profiles.update(claims.user_id, changes)
        return User.from_record(record)

    @strawberry.mutation(description="Block a user: neither of you sees the other.")
    async def block_user(self, info: NovaInfo, user_id: strawberry.ID) -> bool:
        claims = info.context.require_user()
        return await info.context.runtime.profiles.block(
            claims.user_id, parse_id(user_id, "userId")
        )

    @strawberry.mutation(description="Lift a block.")
    async def unblock_user(self, info: NovaInfo, user_id: strawberry.ID) -> bool:
        claims = info.context.require_user()
        return await info.context.runtime.profiles.unblock(
            claims.user_id, parse_id(user_id, "userId")
        )


def _given(value: str | None) -> str | None:
    return None if value is strawberry.UNSET else value
