"""GraphQL object types: users, posts, comments and Relay connections.

Fields that need more data (counts, the viewer's relation to a user or post, authors)
resolve through the request's DataLoaders (`gateway.schema.loaders`), so a list costs a fixed
number of round trips whatever its length.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

import strawberry
from strawberry.types import Info

from gateway.schema.context import Context
from storage.errors import InvalidInput
from storage.repositories.posts import CommentRecord, PostRecord
from storage.repositories.users import UserRecord

if TYPE_CHECKING:  # the media module imports this one
    from gateway.schema.media import Media

NovaInfo = Info[Context, None]
T = TypeVar("T")


def parse_id(value: strawberry.ID | str, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{name} is not a valid ID") from None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
    # Backward pages (chat history, newest last) say whether older items exist.
    has_previous_page: bool = False
    start_cursor: str | None = None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @classmethod
    def of(
        cls, edges: list[Edge[T]], has_next_page: bool, *, has_previous_page: bool = False
    ) -> Connection[T]:
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next_page,
                end_cursor=edges[-1].cursor if edges else None,
                has_previous_page=has_previous_page,
                start_cursor=edges[0].cursor if edges else None,
            ),
        )


@strawberry.type
class User:
    id: strawberry.ID
    username: str
    display_name: str | None
    bio: str | None
    avatar_url: str | None
    created_at: datetime
    record: strawberry.Private[UserRecord]

    @classmethod
    def from_record(cls, record: UserRecord) -> User:
        return cls(
            id=strawberry.ID(str(record.id)),
            username=record.username,
            display_name=record.display_name,
            bio=record.bio,
            avatar_url=record.avatar_url,
            created_at=record.created_at,
            record=record,
        )

    @strawberry.field(description="Whether the email is verified; only you can see yours.")
    def email_verified(self, info: NovaInfo) -> bool | None:
        if info.context.viewer_id != self.record.id:
            return None
        return self.record.email_verified

    @strawberry.field(description="Your email; null for other users.")
    def email(self, info: NovaInfo) -> str | None:
        if info.context.viewer_id != self.record.id:
            return None
        return self.record.email

    @strawberry.field(description="Your roles; null for other users.")
    def roles(self, info: NovaInfo) -> list[str] | None:
        if info.context.viewer_id != self.record.id:
            return None
        return list(self.record.roles)

    @strawberry.field(description="How many people follow this user.")
    async def follower_count(self, info: NovaInfo) -> int:
        row = await info.context.loaders.user_counts.load(self.record.id)
        return row.counts["followers"]

    @strawberry.field(description="How many people this user follows.")
    async def following_count(self, info: NovaInfo) -> int:
        row = await info.context.loaders.user_counts.load(self.record.id)
        return row.counts["following"]

    @strawberry.field(description="Whether you follow this user; false when signed out.")
    async def viewer_follows(self, info: NovaInfo) -> bool:
        return (await info.context.loaders.follow_state.load(self.record.id))[0]

    @strawberry.field(description="Whether this user follows you; false when signed out.")
    async def follows_viewer(self, info: NovaInfo) -> bool:
        return (await info.context.loaders.follow_state.load(self.record.id))[1]


async def load_user(info: NovaInfo, user_id: uuid.UUID) -> User | None:
    record = await info.context.users.load(user_id)
    return User.from_record(record) if record is not None else None


async def load_users(info: NovaInfo, ids: list[uuid.UUID]) -> list[User | None]:
    records = await info.context.users.load_many(ids)
    return [User.from_record(r) if r is not None else None for r in records]


@strawberry.type
class Post:
    id: strawberry.ID
    text: str
    tags: list[str]
    mentions: list[str]
    created_at: datetime
    edited_at: datetime | None
    record: strawberry.Private[PostRecord]

    @classmethod
    def from_record(cls, record: PostRecord) -> Post:
        return cls(
            id=strawberry.ID(str(record.id)),
            text=record.text,
            tags=list(record.tags),
            mentions=list(record.mentions),
            created_at=record.created_at,
            edited_at=record.edited_at,
            record=record,
        )

    @strawberry.field(
        description="Held for review by the blocklist: shown to its author only, published "
        "if a moderator restores it."
    )
    def held(self) -> bool:
        return self.record.held

    @strawberry.field
    async def author(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.record.author_id)

    @strawberry.field
    async def like_count(self, info: NovaInfo) -> int:
        return (await info.context.loaders.post_counts.load(self.record.id)).counts["likes"]

    @strawberry.field
    async def comment_count(self, info: NovaInfo) -> int:
        return (await info.context.loaders.post_counts.load(self.record.id)).counts["comments"]

    @strawberry.field
    async def share_count(self, info: NovaInfo) -> int:
        return (await info.context.loaders.post_counts.load(self.record.id)).counts["shares"]

    @strawberry.field(description="Its pictures or video, in order.")
    async def media(
        self, info: NovaInfo
    ) -> list[Annotated[Media, strawberry.lazy("gateway.schema.media")]]:
        from gateway.schema.media import media_of

        if not self.record.media_ids:
            return []
        records = await info.context.loaders.media.load_many(list(self.record.media_ids))
        return [media_of(info, r) for r in records if r is not None]

    @strawberry.field(description="Whether you like this post; false when signed out.")
    async def viewer_has_liked(self, info: NovaInfo) -> bool:
        return await info.context.loaders.viewer_likes.load(self.record.id)

    @strawberry.field(description="The post this one shares; null if none or no longer there.")
    async def shared_post(self, info: NovaInfo) -> Post | None:
        if self.record.shared_post_id is None:
            return None
        return await load_post(info, self.record.shared_post_id)

    @strawberry.field(description="Comments, oldest first.")
    async def comments(
        self, info: NovaInfo, first: int | None = 20, after: str | None = None
    ) -> Connection[Comment]:
        items, more = await info.context.runtime.posts.comments(self.record.id, first, after)
        hidden = await info.context.loaders.blocked()
        edges = [
            Edge(cursor=cursor, node=Comment.from_record(comment))
            for cursor, comment in items
            if comment.author_id not in hidden
        ]
        return Connection.of(edges, more)


@strawberry.type
class Comment:
    id: strawberry.ID
    text: str
    created_at: datetime
    record: strawberry.Private[CommentRecord]

    @classmethod
    def from_record(cls, record: CommentRecord) -> Comment:
        return cls(
            id=strawberry.ID(str(record.id)),
            text=record.text,
            created_at=record.created_at,
            record=record,
        )

    @strawberry.field
    async def post(self, info: NovaInfo) -> Post | None:
        return await load_post(info, self.record.post_id)

    @strawberry.field
    async def author(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.record.author_id)


async def load_post(info: NovaInfo, post_id: uuid.UUID) -> Post | None:
    """A live post the viewer may see (None if deleted, unknown or blocked either way)."""
    posts = await load_posts(info, [post_id])
    return posts[0]


async def load_posts(info: NovaInfo, ids: list[uuid.UUID]) -> list[Post | None]:
    records = await info.context.loaders.posts.load_many(ids)
    hidden = await info.context.loaders.blocked()
    return [
        Post.from_record(r) if r is not None and r.author_id not in hidden else None
        for r in records
    ]
