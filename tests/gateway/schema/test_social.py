"""The social loop through the running Serve app: follows, posts, likes, shares, comments,
search, and blocks everywhere. Every request is a real GraphQL request over HTTP."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from gql import Client, gql
from gql.transport.httpx import HTTPXAsyncTransport

from deployments.settings import Settings
from storage.db import Database
from tests.support.social import (
    BLOCK,
    CREATE_POST,
    FOLLOW,
    LIKE,
    POST,
    UNFOLLOW,
    UNLIKE,
    USER_COUNTS,
    Member,
    call,
    create_post,
    make_members,
)

pytestmark = pytest.mark.stack


async def _counts(http_url: str, viewer: Member, user: Member) -> dict[str, object]:
    user_data: dict[str, object] = (await call(http_url, viewer, USER_COUNTS, id=user.id)).ok()[
        "user"
    ]
    return user_data


async def _outbox_count(db: Database, event_type: str, **payload: str) -> int:
    async with db.connection() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE type = $1 AND payload @> $2::jsonb",
            event_type,
            payload,
        )
    return count


# -- follows -------------------------------------------------------------------------------


async def test_follow_is_idempotent_counted_and_listed_newest_first(
    http_url: str, db: Database, settings: Settings
) -> None:
    star, a, b = await make_members(db, settings, 3)
    for fan in (a, b, a):  # a follows twice: counted once
        assert (await call(http_url, fan, FOLLOW, id=star.id)).ok() == {"follow": True}

    star_counts = await _counts(http_url, a, star)
    assert star_counts["followerCount"] == 2
    assert star_counts["viewerFollows"] is True
    assert star_counts["followsViewer"] is False
    assert (await _counts(http_url, star, a))["followingCount"] == 1
    assert (await _counts(http_url, star, a))["followsViewer"] is True
    assert await _outbox_count(db, "graph.follow.created", followee_id=star.id) == 2

    page = (
        await call(
            http_url,
            None,
            "query($id: ID!) { followers(userId: $id, first: 1) "
            "{ edges { node { id } } pageInfo { hasNextPage endCursor } } }",
            id=star.id,
        )
    ).ok()["followers"]
    assert [e["node"]["id"] for e in page["edges"]] == [b.id]  # newest first
    assert page["pageInfo"]["hasNextPage"] is True
    rest = (
        await call(
            http_url,
            None,
            "query($id: ID!, $after: String) { followers(userId: $id, first: 5, after: $after) "
            "{ edges { node { id } } pageInfo { hasNextPage } } }",
            id=star.id,
            after=page["pageInfo"]["endCursor"],
        )
    ).ok()["followers"]
    assert [e["node"]["id"] for e in rest["edges"]] == [a.id]
    assert rest["pageInfo"]["hasNextPage"] is False
    following = (
        await call(
            http_url,
            None,
            "query($id: ID!) { following(userId: $id) { edges { node { id } } } }",
            id=a.id,
        )
    ).ok()["following"]
    assert [e["node"]["id"] for e in following["edges"]] == [star.id]

    for _ in range(2):  # unfollow is idempotent too
        assert (await call(http_url, a, UNFOLLOW, id=star.id)).ok() == {"unfollow": True}
    assert (await _counts(http_url, b, star))["followerCount"] == 1
    assert (await _counts(http_url, b, a))["followingCount"] == 0
    assert await _outbox_count(db, "graph.follow.deleted", followee_id=star.id) == 1


async def test_follow_refuses_self_unknown_anonymous_and_blocked(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b = await make_members(db, settings, 2)
    assert (await call(http_url, a, FOLLOW, id=a.id)).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, a, FOLLOW, id=str(uuid.uuid4()))).codes == ["NOT_FOUND"]
    assert (await call(http_url, a, FOLLOW, id="not-an-id")).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, None, FOLLOW, id=b.id)).codes == ["UNAUTHENTICATED"]
    assert (await call(http_url, b, BLOCK, id=a.id)).ok()
    assert (await call(http_url, a, FOLLOW, id=b.id)).codes == ["FORBIDDEN"]
    assert (await call(http_url, b, FOLLOW, id=a.id)).codes == ["FORBIDDEN"]
    async with db.connection() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM follows WHERE follower_id = ANY($1)", [a.uuid, b.uuid]
            )
            == 0
        )


async def test_a_block_removes_follows_both_ways_and_their_counts(
    http_url: str, db: Database, settings: Settings
) -> None:
    a, b, c = await make_members(db, settings, 3)
    await call(http_url, a, FOLLOW, id=b.id)
    await call(http_url, b, FOLLOW, id=a.id)
    assert (await _counts(http_url, c, a))["followerCount"] == 1
    assert (await call(http_url, a, BLOCK, id=b.id)).ok()
    a_counts = await _counts(http_url, c, a)
    assert (a_counts["followerCount"], a_counts["followingCount"]) == (0, 0)
    b_counts = await _counts(http_url, c, b)
    assert (b_counts["followerCount"], b_counts["followingCount"]) == (0, 0)
    # b can no longer see a's followers list (a blocked b), nor a's posts.
    reply = await call(
        http_url, b, "query($id: ID!) { followers(userId: $id) { edges { cursor } } }", id=a.id
    )
    assert reply.codes == ["NOT_FOUND"]


async def test_follow_suggestions_rank_by_how_many_of_your_followees_follow_them(
    http_url: str, db: Database, settings: Settings
) -> None:
    me, f1, f2, f3, popular, niche, blocked, already = await make_members(db, settings, 8)
    for followee in (f1, f2, f3, already):
        await call(http_url, me, FOLLOW, id=followee.id)
    for fan in (f1, f2, f3):
        await call(http_url, fan, FOLLOW, id=popular.id)
        await call(http_url, fan, FOLLOW, id=blocked.id)
        await call(http_url, fan, FOLLOW, id=already.id)
    await call(http_url, f1, FOLLOW, id=niche.id)
    await call(http_url, f1, FOLLOW, id=me.id)  # never suggest yourself
    await call(http_url, blocked, BLOCK, id=me.id)
    suggested = (await call(http_url, me, "{ followSuggestions(first: 5) { id } }")).ok()[
        "followSuggestions"
    ]
    assert [user["id"] for user in suggested] == [popular.id, niche.id]
    assert (await call(http_url, None, "{ followSuggestions { id } }")).codes == ["UNAUTHENTICATED"]


# -- posts ---------------------------------------------------------------------------------


async def test_create_post_extracts_tags_and_mentions_and_is_idempotent_by_key(
    http_url: str, db: Database, settings: Settings
) -> None:
    (author,) = await make_members(db, settings, 1)
    text = "Shipping #Rust and #rust with @Alice_1 and @bob_22 #go"
    first = (await call(http_url, author, CREATE_POST, text=text, key="k-1")).ok()["createPost"]
    assert first["tags"] == ["rust", "go"]
    assert first["mentions"] == ["alice_1", "bob_22"]
    assert first["author"]["id"] == author.id
    assert (first["likeCount"], first["commentCount"], first["shareCount"]) == (0, 0, 0)
    again = (await call(http_url, author, CREATE_POST, text=text, key="k-1")).ok()["createPost"]
    assert again["id"] == first["id"]
    async with db.connection() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", author.uuid) == 1
        )
    assert await _outbox_count(db, "content.post.created", post_id=first["id"]) == 1


async def test_create_post_refuses_bad_text_and_creates_nothing(
    http_url: str, db: Database, settings: Settings
) -> None:
    (author,) = await make_members(db, settings, 1)
    for text in ("", "   ", "x" * 2001):
        assert (await call(http_url, author, CREATE_POST, text=text)).codes == ["BAD_USER_INPUT"]
    assert (await call(http_url, author, CREATE_POST, text="ok", key="k" * 129)).codes == [
        "BAD_USER_INPUT"
    ]
    assert (await call(http_url, None, CREATE_POST, text="hello")).codes == ["UNAUTHENTICATED"]
    async with db.connection() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", author.uuid) == 0
        )
    (await call(http_url, author, CREATE_POST, text="x" * 2000)).ok()


async def test_update_and_delete_post_permissions(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, other = await make_members(db, settings, 2)
    (moderator,) = await make_members(db, settings, 1, roles=("user", "moderator"))
    post = await create_post(http_url, author, "first draft #draft")
    update = (
        "mutation($id: ID!, $text: String!) "
        "{ updatePost(id: $id, text: $text) { text tags editedAt } }"
    )
    assert (await call(http_url, other, update, id=post["id"], text="hijack")).codes == [
        "FORBIDDEN"
    ]
    edited = (await call(http_url, author, update, id=post["id"], text="final #done")).ok()[
        "updatePost"
    ]
    assert edited["text"] == "final #done"
    assert edited["tags"] == ["done"]
    assert edited["editedAt"] is not None

    delete = "mutation($id: ID!) { deletePost(id: $id) }"
    assert (await call(http_url, other, delete, id=post["id"])).codes == ["FORBIDDEN"]
    assert (await call(http_url, author, delete, id=post["id"])).ok() == {"deletePost": True}
    assert (await call(http_url, other, POST, id=post["id"])).ok() == {"post": None}
    assert (await call(http_url, author, delete, id=post["id"])).codes == ["NOT_FOUND"]
    assert (await call(http_url, other, LIKE, id=post["id"])).codes == ["NOT_FOUND"]

    second = await create_post(http_url, author, "moderated")
    assert (await call(http_url, moderator, delete, id=second["id"])).ok() == {"deletePost": True}
    assert await _outbox_count(db, "content.post.deleted", post_id=second["id"]) == 1


async def test_user_posts_pages_newest_first_without_gaps(
    http_url: str, db: Database, settings: Settings
) -> None:
    (author,) = await make_members(db, settings, 1)
    ids = [(await create_post(http_url, author, f"post {n}"))["id"] for n in range(7)]
    query = """
    query($id: ID!, $after: String) {
      userPosts(userId: $id, first: 3, after: $after) {
        edges { node { id } } pageInfo { hasNextPage endCursor }
      }
    }
    """
    seen: list[str] = []
    after = None
    for _ in range(5):
        page = (await call(http_url, None, query, id=author.id, after=after)).ok()["userPosts"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(ids))
    assert (await call(http_url, None, query, id=author.id, after="garbage")).codes == [
        "BAD_USER_INPUT"
    ]


# -- likes ---------------------------------------------------------------------------------


async def test_like_twice_counts_once_and_unlike_takes_it_back(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, fan = await make_members(db, settings, 2)
    post = await create_post(http_url, author, "like me")
    for _ in range(2):
        liked = (await call(http_url, fan, LIKE, id=post["id"])).ok()["likePost"]
        assert (liked["likeCount"], liked["viewerHasLiked"]) == (1, True)
    seen_by_author = (await call(http_url, author, POST, id=post["id"])).ok()["post"]
    assert (seen_by_author["likeCount"], seen_by_author["viewerHasLiked"]) == (1, False)
    for _ in range(2):
        unliked = (await call(http_url, fan, UNLIKE, id=post["id"])).ok()["unlikePost"]
        assert (unliked["likeCount"], unliked["viewerHasLiked"]) == (0, False)
    assert await _outbox_count(db, "social.like.created", post_id=post["id"]) == 1
    assert await _outbox_count(db, "social.like.deleted", post_id=post["id"]) == 1
    assert (await call(http_url, None, LIKE, id=post["id"])).codes == ["UNAUTHENTICATED"]
    assert (await call(http_url, fan, LIKE, id=str(uuid.uuid4()))).codes == ["NOT_FOUND"]


async def test_two_hundred_users_liking_one_post_at_once(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, *fans = await make_members(db, settings, 201)
    post = await create_post(http_url, author, "the hot post")

    async def like(fan: Member) -> Any:
        # As a client does: an overloaded gateway sheds with 503 + Retry-After, and a
        # like is idempotent, so it is retried (a retry must not count twice; see below).
        for _ in range(5):
            reply = await call(http_url, fan, LIKE, id=post["id"])
            if reply.status != 503:
                return reply
            await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
        return reply

    replies = await asyncio.gather(*(like(fan) for fan in fans))
    assert all(reply.ok()["likePost"]["viewerHasLiked"] for reply in replies)
    final = (await call(http_url, author, POST, id=post["id"])).ok()["post"]
    assert final["likeCount"] == 200
    async with db.connection() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM likes WHERE post_id = $1", uuid.UUID(post["id"])
        )
        counter = await conn.fetchval(
            "SELECT likes FROM post_counters WHERE post_id = $1", uuid.UUID(post["id"])
        )
    assert rows == counter == 200
    assert await _outbox_count(db, "social.like.created", post_id=post["id"]) == 200


async def test_like_unlike_races_leave_the_count_equal_to_the_rows(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, *fans = await make_members(db, settings, 31)
    post = await create_post(http_url, author, "contested")
    rng = random.Random(7)

    async def flip(fan: Member) -> None:
        for _ in range(6):
            await call(http_url, fan, rng.choice([LIKE, UNLIKE]), id=post["id"])

    await asyncio.gather(*(flip(fan) for fan in fans))
    shown = (await call(http_url, author, POST, id=post["id"])).ok()["post"]["likeCount"]
    async with db.connection() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM likes WHERE post_id = $1", uuid.UUID(post["id"])
        )
        created = await conn.fetchval(
            "SELECT count(*) FROM outbox"
            " WHERE type = 'social.like.created' AND payload->>'post_id' = $1",
            post["id"],
        )
        deleted = await conn.fetchval(
            "SELECT count(*) FROM outbox"
            " WHERE type = 'social.like.deleted' AND payload->>'post_id' = $1",
            post["id"],
        )
    assert shown == rows == created - deleted


async def test_blocked_users_cannot_see_like_or_comment_on_each_others_posts(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, blocked, bystander = await make_members(db, settings, 3)
    post = await create_post(http_url, author, "not for you #secretword")
    await call(
        http_url,
        bystander,
        "mutation($id: ID!, $t: String!) { createComment(postId: $id, text: $t) { id } }",
        id=post["id"],
        t="hi",
    )
    assert (await call(http_url, author, BLOCK, id=blocked.id)).ok()
    assert (await call(http_url, blocked, POST, id=post["id"])).ok() == {"post": None}
    assert (await call(http_url, blocked, LIKE, id=post["id"])).codes == ["NOT_FOUND"]
    comment = 'mutation($id: ID!) { createComment(postId: $id, text: "hey") { id } }'
    assert (await call(http_url, blocked, comment, id=post["id"])).codes == ["NOT_FOUND"]
    share = "mutation($id: ID!) { sharePost(postId: $id) { id } }"
    assert (await call(http_url, blocked, share, id=post["id"])).codes == ["NOT_FOUND"]
    posts = "query($id: ID!) { userPosts(userId: $id) { edges { cursor } } }"
    assert (await call(http_url, blocked, posts, id=author.id)).codes == ["NOT_FOUND"]
    search = '{ searchPosts(query: "secretword") { edges { node { id } } } }'
    assert (await call(http_url, blocked, search)).ok()["searchPosts"]["edges"] == []
    assert len((await call(http_url, bystander, search)).ok()["searchPosts"]["edges"]) == 1
    people = "query($q: String!) { searchUsers(query: $q) { id } }"
    # Others may match by similarity (every test user is `<prefix>_<hex>`); never the author.
    found = (await call(http_url, blocked, people, q=author.username)).ok()["searchUsers"]
    assert author.id not in [user["id"] for user in found]
    found = (await call(http_url, bystander, people, q=author.username)).ok()["searchUsers"]
    assert found[0]["id"] == author.id, "an exact username comes first for anyone else"
    # The author no longer sees the blocked user's comments either.
    await call(http_url, author, BLOCK, id=bystander.id)
    comments = "query($id: ID!) { post(id: $id) { comments { edges { node { id } } } } }"
    assert (await call(http_url, author, comments, id=post["id"])).ok()["post"]["comments"][
        "edges"
    ] == []


# -- shares and comments -------------------------------------------------------------------


async def test_share_creates_a_post_pointing_at_the_original_and_counts(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, sharer = await make_members(db, settings, 2)
    original = await create_post(http_url, author, "worth sharing")
    share = (
        "mutation($id: ID!, $t: String) "
        "{ sharePost(postId: $id, text: $t) { id text sharedPost { id shareCount } } }"
    )
    shared = (await call(http_url, sharer, share, id=original["id"], t="look")).ok()["sharePost"]
    assert shared["text"] == "look"
    assert shared["sharedPost"] == {"id": original["id"], "shareCount": 1}
    bare = (await call(http_url, sharer, share, id=original["id"], t=None)).ok()["sharePost"]
    assert bare["sharedPost"]["shareCount"] == 2
    assert await _outbox_count(db, "social.share.created", post_id=original["id"]) == 2
    assert (await call(http_url, sharer, share, id=str(uuid.uuid4()), t=None)).codes == [
        "NOT_FOUND"
    ]


async def test_deleting_a_share_takes_it_off_the_original_count_once(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, sharer = await make_members(db, settings, 2)
    original = await create_post(http_url, author, "share me, then think better of it")
    share = "mutation($id: ID!) { sharePost(postId: $id) { id } }"
    first = (await call(http_url, sharer, share, id=original["id"])).ok()["sharePost"]
    await call(http_url, sharer, share, id=original["id"])
    delete = "mutation($id: ID!) { deletePost(id: $id) }"
    count = "query($id: ID!) { post(id: $id) { shareCount } }"
    assert (await call(http_url, sharer, delete, id=first["id"])).ok() == {"deletePost": True}
    assert (await call(http_url, author, count, id=original["id"])).ok()["post"] == {
        "shareCount": 1
    }
    again = await call(http_url, sharer, delete, id=first["id"])
    assert again.codes == ["NOT_FOUND"]
    assert (await call(http_url, author, count, id=original["id"])).ok()["post"] == {
        "shareCount": 1
    }
    assert (
        await _outbox_count(
            db, "social.share.deleted", post_id=original["id"], share_id=first["id"]
        )
        == 1
    )
    async with db.connection() as conn:
        stored = await conn.fetchval(
            "SELECT shares FROM post_counters WHERE post_id = $1", uuid.UUID(original["id"])
        )
    assert stored == 1


async def test_comments_count_page_and_delete_by_the_right_people(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, commenter, other = await make_members(db, settings, 3)
    post = await create_post(http_url, author, "discuss")
    create = (
        "mutation($id: ID!, $t: String!) { createComment(postId: $id, text: $t) "
        "{ id text author { id } post { id commentCount } } }"
    )
    made = []
    for n in range(3):
        made.append(
            (await call(http_url, commenter, create, id=post["id"], t=f"c{n}")).ok()[
                "createComment"
            ]
        )
    assert made[-1]["post"]["commentCount"] == 3
    assert made[0]["author"]["id"] == commenter.id
    assert (await call(http_url, commenter, create, id=post["id"], t="")).codes == [
        "BAD_USER_INPUT"
    ]
    assert (await call(http_url, commenter, create, id=str(uuid.uuid4()), t="x")).codes == [
        "NOT_FOUND"
    ]

    page = """
    query($id: ID!, $after: String) {
      post(id: $id) { commentCount comments(first: 2, after: $after) {
        edges { node { text } } pageInfo { hasNextPage endCursor } } }
    }
    """
    first = (await call(http_url, other, page, id=post["id"])).ok()["post"]
    assert [e["node"]["text"] for e in first["comments"]["edges"]] == ["c0", "c1"]
    second = (
        await call(
            http_url, other, page, id=post["id"], after=first["comments"]["pageInfo"]["endCursor"]
        )
    ).ok()["post"]
    assert [e["node"]["text"] for e in second["comments"]["edges"]] == ["c2"]

    delete = "mutation($id: ID!) { deleteComment(id: $id) }"
    assert (await call(http_url, other, delete, id=made[0]["id"])).codes == ["FORBIDDEN"]
    assert (await call(http_url, commenter, delete, id=made[0]["id"])).ok()
    assert (await call(http_url, author, delete, id=made[1]["id"])).ok()  # the post's author
    assert (await call(http_url, author, delete, id=made[1]["id"])).codes == ["NOT_FOUND"]
    assert (await call(http_url, other, POST, id=post["id"])).ok()["post"]["commentCount"] == 1


# -- search --------------------------------------------------------------------------------


async def test_search_users_puts_the_exact_username_first(
    http_url: str, db: Database, settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:6]
    names = [f"zorbel{suffix}", f"zorbel{suffix}x", f"zorbel{suffix}_fan"]
    async with db.transaction() as conn:
        for name in names:
            await conn.execute(
                "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')",
                uuid.uuid4(),
                name,
                f"{name}@example.com",
            )
    query = "query($q: String!) { searchUsers(query: $q, first: 5) { username } }"
    found = (await call(http_url, None, query, q=names[0].upper())).ok()["searchUsers"]
    assert found[0]["username"] == names[0]
    assert {u["username"] for u in found} == set(names)
    assert (await call(http_url, None, query, q="  ")).codes == ["BAD_USER_INPUT"]


async def test_search_posts_stems_ranks_tags_and_skips_deleted_posts(
    http_url: str, db: Database, settings: Settings
) -> None:
    (author,) = await make_members(db, settings, 1)
    word = f"quixot{uuid.uuid4().hex[:6]}"
    tagged = await create_post(http_url, author, f"#{word} is the theme")
    plain = await create_post(http_url, author, f"I keep running into {word} people")
    gone = await create_post(http_url, author, f"{word} deleted soon")
    await call(http_url, author, "mutation($id: ID!) { deletePost(id: $id) }", id=gone["id"])
    query = "query($q: String!) { searchPosts(query: $q, first: 5) { edges { node { id } } } }"
    hits = [
        e["node"]["id"]
        for e in (await call(http_url, None, query, q=word)).ok()["searchPosts"]["edges"]
    ]
    assert hits == [tagged["id"], plain["id"]]  # the tag weighs more; the deleted post is absent
    stemmed = await call(http_url, None, query, q=f"runs {word}")
    assert [e["node"]["id"] for e in stemmed.ok()["searchPosts"]["edges"]] == [plain["id"]]


async def test_search_posts_pages_by_relevance_with_a_real_graphql_client(
    http_url: str, db: Database, settings: Settings
) -> None:
    (author,) = await make_members(db, settings, 1)
    word = f"pagable{uuid.uuid4().hex[:6]}"
    for n in range(5):
        await create_post(http_url, author, f"{word} " * (n + 1))
    transport = HTTPXAsyncTransport(url=f"{http_url}/graphql", timeout=30)
    query = gql(
        "query($q: String!, $after: String) { searchPosts(query: $q, first: 2, after: $after) "
        "{ edges { node { id } } pageInfo { hasNextPage endCursor } } }"
    )
    async with Client(transport=transport) as session:
        seen: list[str] = []
        after = None
        for _ in range(5):
            query.variable_values = {"q": word, "after": after}
            result = await session.execute(query)
            page = result["searchPosts"]
            seen += [e["node"]["id"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 5
