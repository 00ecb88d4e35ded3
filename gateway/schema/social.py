"""GraphQL operations of the social loop: follows, posts, likes, shares, comments, search.

Resolvers check who is asking and what they may see, call the services
(`gateway.services.graph`, `gateway.services.posts`, `gateway.services.search`, the counter
shards) and shape the answer. Anyone blocked either way is invisible: their posts,
comments and profiles never come back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator

import strawberry

from actors.timeline_shard import FEED_CHANNEL
from gateway.schema.feed_types import (
    FeedConnection,
    FeedEdge,
    FeedMode,
    FeedUpdate,
    RankingFallback,
    keep_features,
)
from gateway.schema.types import (
    Comment,
    Connection,
    Edge,
    NovaInfo,
    Post,
    User,
    load_post,
    load_posts,
    load_users,
    parse_id,
)
from gateway.services.pages import Page
from storage.errors import NotFound


@strawberry.input
class CreatePostInput:
    text: str = strawberry.field(description="1-2,000 characters; #tags and @mentions count.")
    idempotency_key: str | None = strawberry.field(
        default=None, description="Retrying with the same key returns the same post."
    )
    media_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Your completed uploads (PROCESSING or READY), in order: up to 4 "
        "pictures or one video; with media, the text may be empty.",
    )


async def _visible_user(info: NovaInfo, user_id: uuid.UUID) -> None:
    """Raise NOT_FOUND for an unknown user or one blocked either way."""
    if user_id in await info.context.loaders.blocked():
        raise NotFound("no such user")
    if await info.context.users.load(user_id) is None:
        raise NotFound("no such user")


async def _user_connection(info: NovaInfo, page: Page) -> Connection[User]:
    users = await load_users(info, [user_id for _, user_id in page.items])
    edges = [
        Edge(cursor=cursor, node=user)
        for (cursor, _), user in zip(page.items, users, strict=True)
        if user is not None
    ]
    return Connection.of(edges, page.has_next_page)


async def _visible_post(info: NovaInfo, post_id: uuid.UUID) -> Post:
    post = await load_post(info, post_id)
    if post is None:
        raise NotFound("post not found")
    return post


def _roles(info: NovaInfo) -> frozenset[str]:
    return frozenset(info.context.require_user().roles)


@strawberry.type
class SocialQuery:
    @strawberry.field(description="People who follow a user, newest first.")
    async def followers(
        self,
        info: NovaInfo,
        user_id: strawberry.ID,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[User]:
        return await _connections(info, user_id, "followers", first, after)

    @strawberry.field(description="People a user follows, newest first.")
    async def following(
        self,
        info: NovaInfo,
        user_id: strawberry.ID,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[User]:
        return await _connections(info, user_id, "following", first, after)

    @strawberry.field(
        description="People followed by people you follow, most such followers first."
    )
    async def follow_suggestions(self, info: NovaInfo, first: int | None = 10) -> list[User]:
        claims = info.context.require_user()
        ids = await info.context.runtime.graph.suggestions(claims.user_id, first)
        return [user for user in await load_users(info, ids) if user is not None]

    @strawberry.field(
        description="A post; null if it was deleted or you cannot see it (your own post "
        "held for review comes back, with `held: true`)."
    )
    async def post(self, info: NovaInfo, id: strawberry.ID) -> Post | None:
        post_id = parse_id(id)
        found = await load_post(info, post_id)
        viewer = info.context.viewer_id
        if found is None and viewer is not None:
            held = await info.context.runtime.posts.held(post_id, viewer)
            return Post.from_record(held) if held is not None else None
        return found

    @strawberry.field(description="A user's posts, newest first.")
    async def user_posts(
        self,
        info: NovaInfo,
        user_id: strawberry.ID,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[Post]:
        author = parse_id(user_id, "userId")
        await _visible_user(info, author)
        page = await info.context.runtime.posts.by_author(author, first, after)
        return await _post_connection(info, page.items, page.has_next_page)

    @strawberry.field(description="Your home feed: newest first, or ranked (mode: RANKED).")
    async def feed(
        self,
        info: NovaInfo,
        first: int | None = 20,
        after: str | None = None,
        mode: FeedMode = FeedMode.LATEST,
    ) -> FeedConnection:
        claims = info.context.require_user()
        runtime = info.context.runtime
        # Who is hidden from the viewer is needed to show the page, and does not depend on
        # it: that query runs while the page is found.
        hidden = info.context.loaders.blocked()
        if mode is FeedMode.RANKED and runtime.ranked is not None:
            ranked, _ = await asyncio.gather(
                runtime.ranked.page(claims.user_id, first, after), hidden
            )
            posts = await load_posts(info, [item.post_id for item in ranked.items])
            edges = [
                FeedEdge(
                    cursor=item.cursor,
                    node=post,
                    score=item.score,
                    model_version=item.model_version,
                )
                for item, post in zip(ranked.items, posts, strict=True)
                if post is not None
            ]
            if ranked.fallback is not None:  # served newest first: keep its features too
                keep_features(info, claims.user_id, posts)
            fallback = RankingFallback(ranked.fallback) if ranked.fallback else None
            return FeedConnection.of(edges, ranked.has_next_page, ranking_fallback=fallback)
        (items, more), _ = await asyncio.gather(
            runtime.feed.page(claims.user_id, first, after, pull=mode is FeedMode.PULL), hidden
        )
        posts = await load_posts(info, [post_id for _, post_id in items])
        keep_features(info, claims.user_id, posts)
        return FeedConnection.of(
            [
                FeedEdge(cursor=cursor, node=post)
                for (cursor, _), post in zip(items, posts, strict=True)
                if post is not None
            ],
            more,
            ranking_fallback=RankingFallback.RANKING_OFF if mode is FeedMode.RANKED else None,
        )

    @strawberry.field(description="People by username or display name, best match first.")
    async def search_users(self, info: NovaInfo, query: str, first: int | None = 20) -> list[User]:
        ids = await info.context.runtime.search.users(query, first, info.context.viewer_id)
        return [user for user in await load_users(info, ids) if user is not None]

    @strawberry.field(description="Posts by words and #tags, most relevant then newest first.")
    async def search_posts(
        self, info: NovaInfo, query: str, first: int | None = 20, after: str | None = None
    ) -> Connection[Post]:
        hits, more = await info.context.runtime.search.posts(
            query, first, after, info.context.viewer_id
        )
        return await _post_connection(info, [(h.cursor, h.id) for h in hits], more)


async def _connections(
    info: NovaInfo, user_id: strawberry.ID, direction: str, first: int | None, after: str | None
) -> Connection[User]:
    target = parse_id(user_id, "userId")
    await _visible_user(info, target)
    page = await info.context.runtime.graph.connections(
        target, direction, info.context.viewer_id, first, after
    )
    return await _user_connection(info, page)


async def _post_connection(
    info: NovaInfo, items: list[tuple[str, uuid.UUID]], has_next_page: bool
) -> Connection[Post]:
    posts = await load_posts(info, [post_id for _, post_id in items])
    edges = [
        Edge(cursor=cursor, node=post)
        for (cursor, _), post in zip(items, posts, strict=True)
        if post is not None
    ]
    return Connection.of(edges, has_next_page)


@strawberry.type
class SocialMutation:
    @strawberry.mutation(description="Follow a user (idempotent).")
    async def follow(self, info: NovaInfo, user_id: strawberry.ID) -> bool:
        claims = info.context.require_user()
        return await info.context.runtime.graph.follow(claims.user_id, parse_id(user_id, "userId"))

    @strawberry.mutation(description="Stop following a user (idempotent).")
    async def unfollow(self, info: NovaInfo, user_id: strawberry.ID) -> bool:
        claims = info.context.require_user()
        return await info.context.runtime.graph.unfollow(
            claims.user_id, parse_id(user_id, "userId")
        )

    @strawberry.mutation(description="Publish a post.")
    async def create_post(self, info: NovaInfo, input: CreatePostInput) -> Post:
        claims = info.context.require_user()
        media = [parse_id(m, "mediaIds") for m in input.media_ids or []]
        record = await info.context.runtime.posts.create(
            claims.user_id, input.text, input.idempotency_key, media_ids=media
        )
        return Post.from_record(record)

    @strawberry.mutation(description="Edit your post's text.")
    async def update_post(self, info: NovaInfo, id: strawberry.ID, text: str) -> Post:
        claims = info.context.require_user()
        record = await info.context.runtime.posts.update(parse_id(id), claims.user_id, text)
        return Post.from_record(record)

    @strawberry.mutation(description="Delete a post (its author, a moderator or an admin).")
    async def delete_post(self, info: NovaInfo, id: strawberry.ID) -> bool:
        claims = info.context.require_user()
        return await info.context.runtime.posts.delete(parse_id(id), claims.user_id, _roles(info))

    @strawberry.mutation(description="Like a post (idempotent).")
    async def like_post(self, info: NovaInfo, post_id: strawberry.ID) -> Post:
        return await _like(info, post_id, liked=True)

    @strawberry.mutation(description="Take back a like (idempotent).")
    async def unlike_post(self, info: NovaInfo, post_id: strawberry.ID) -> Post:
        return await _like(info, post_id, liked=False)

    @strawberry.mutation(description="Share a post, with optional words of your own.")
    async def share_post(
        self, info: NovaInfo, post_id: strawberry.ID, text: str | None = None
    ) -> Post:
        claims = info.context.require_user()
        original = parse_id(post_id, "postId")
        await _visible_post(info, original)
        record = await info.context.runtime.posts.create(
            claims.user_id, text or "", shared_post_id=original
        )
        return Post.from_record(record)

    @strawberry.mutation(description="Comment on a post.")
    async def create_comment(self, info: NovaInfo, post_id: strawberry.ID, text: str) -> Comment:
        claims = info.context.require_user()
        target = parse_id(post_id, "postId")
        await _visible_post(info, target)
        record = await info.context.runtime.posts.comment(target, claims.user_id, text)
        return Comment.from_record(record)

    @strawberry.mutation(
        description="Delete a comment (its author, the post's author or a moderator)."
    )
    async def delete_comment(self, info: NovaInfo, id: strawberry.ID) -> bool:
        claims = info.context.require_user()
        return await info.context.runtime.posts.delete_comment(
            parse_id(id), claims.user_id, _roles(info)
        )


async def _like(info: NovaInfo, post_id: strawberry.ID, *, liked: bool) -> Post:
    claims = info.context.require_user()
    target = parse_id(post_id, "postId")
    post = await _visible_post(info, target)
    row = await info.context.runtime.posts.like(target, claims.user_id, liked)
    # The shard's answer is the freshest count there is: serve it, and the viewer's like.
    loaders = info.context.loaders
    loaders.post_counts.prime(target, row, force=True)
    loaders.viewer_likes.prime(target, liked, force=True)
    return post


@strawberry.type
class SocialSubscription:
    @strawberry.subscription(description="Each post that lands in your home timeline, live.")
    async def feed_updated(self, info: NovaInfo) -> AsyncGenerator[FeedUpdate, None]:
        claims = info.context.require_user()
        channel = FEED_CHANNEL.format(claims.user_id)
        async with info.context.runtime.hub.listen(channel) as subscriber:
            while True:
                # Feed updates are hints: one a slow client missed shows on its next read.
                post_id = await subscriber.queue.get()
                # Each update gets fresh loaders: a long subscription must not serve the
                # posts, counts or blocks it cached minutes ago.
                info.context.reset_loaders()
                yield FeedUpdate(post_id=strawberry.ID(post_id))
