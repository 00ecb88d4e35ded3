"""Reports, the moderation queue, moderators' actions and their effects, the audit log and
the blocklist, end to end through GraphQL over HTTP (and a WebSocket) on the test stack."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from deployments.settings import Settings
from storage.db import Database
from tests.conftest import nova, wait_until
from tests.gateway.services.test_stories import STORY, feed, story_of
from tests.support.chat import raw_socket, room_of, send, start, until_closed
from tests.support.graphql import LOGIN, post, register
from tests.support.social import (
    FANOUT_WAIT_S,
    FOLLOW,
    POST,
    Member,
    call,
    create_post,
    feed_ids,
    make_members,
)

pytestmark = pytest.mark.stack

REPORT = """
mutation($type: ReportTargetType!, $id: ID!, $reason: ReportReason!, $note: String) {
  report(input: {targetType: $type, targetId: $id, reason: $reason, note: $note}) {
    id targetType targetId reason note status createdAt
  }
}
"""
QUEUE = """
query($status: ReportStatus, $first: Int, $after: String) {
  moderationQueue(status: $status, first: $first, after: $after) {
    edges { cursor node {
      targetType targetId reportCount reasons firstReportedAt lastReportedAt state text
      mediaIds suspendedUntil author { id } message { id roomId seq text senderId }
    } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
SHARE = 'mutation($id: ID!) { sharePost(postId: $id, text: "look") { id } }'
SHARE_COUNT = "query($id: ID!) { post(id: $id) { shareCount } }"
MODERATE = """
mutation($type: ReportTargetType!, $id: ID!, $action: ModerationAction!, $note: String,
         $hours: Int) {
  moderate(input: {targetType: $type, targetId: $id, action: $action, note: $note,
                   durationHours: $hours}) {
    targetType targetId action state resolvedReports suspendedUntil
    item { reportCount state }
  }
}
"""
LOG = """
query($first: Int, $after: String) {
  moderationLog(first: $first, after: $after) {
    edges { cursor node { id at actorId action targetType targetId note details } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
SEARCH = "query($q: String!) { searchPosts(query: $q, first: 20) { edges { node { id } } } }"
COMMENT = "mutation($id: ID!, $text: String!) { createComment(postId: $id, text: $text) { id } }"
COMMENTS = "query($id: ID!) { post(id: $id) { comments(first: 20) { edges { node { id } } } } }"
MESSAGES = """
query($room: ID!) {
  messages(roomId: $room, last: 20) { edges { node { id text deleted removedByModeration } } }
}
"""
ME = "query { me { id } }"


async def _report(
    http_url: str, member: Member | None, kind: str, target: str, reason: str = "SPAM"
) -> Any:
    return await call(http_url, member, REPORT, type=kind, id=target, reason=reason, note="n")


async def _moderate(
    http_url: str, moderator: Member, kind: str, target: str, action: str, **extra: Any
) -> dict[str, Any]:
    reply = await call(
        http_url, moderator, MODERATE, type=kind, id=target, action=action, note="why", **extra
    )
    result: dict[str, Any] = reply.ok()["moderate"]
    return result


async def _reports_by(db: Database, reporter: Member) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM reports WHERE reporter_id = $1", reporter.uuid
    )
    return count


async def _queue(http_url: str, moderator: Member, status: str = "OPEN") -> list[dict[str, Any]]:
    """The whole queue, page by page (bounded)."""
    nodes: list[dict[str, Any]] = []
    after = None
    for _ in range(50):
        page = (await call(http_url, moderator, QUEUE, status=status, first=50, after=after)).ok()
        connection = page["moderationQueue"]
        nodes += [edge["node"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            return nodes
        after = connection["pageInfo"]["endCursor"]
    raise AssertionError("the queue did not end within 50 pages")


async def _people(http_url: str, viewer: Member, query: str) -> list[str]:
    found = await call(
        http_url, viewer, "query($q: String!) { searchUsers(query: $q) { id } }", q=query
    )
    return [user["id"] for user in found.ok()["searchUsers"]]


async def _moderator(db: Database, settings: Settings, role: str = "moderator") -> Member:
    (member,) = await make_members(db, settings, 1, prefix="mod", roles=("user", role))
    return member


async def test_report_refusals_store_nothing(
    http_url: str, db: Database, settings: Settings
) -> None:
    reporter, author, outsider = await make_members(db, settings, 3, prefix="rep")
    mine = await create_post(http_url, reporter, "my own words")
    theirs = await create_post(http_url, author, "words to report")
    room = await room_of(http_url, author, reporter)
    message = (await send(http_url, author, room, "a message")).ok()["sendMessage"]

    unknown = str(uuid.uuid4())
    assert (await _report(http_url, reporter, "POST", unknown)).codes == ["NOT_FOUND"]
    assert (await _report(http_url, reporter, "USER", unknown)).codes == ["NOT_FOUND"]
    assert (await _report(http_url, reporter, "POST", mine["id"])).codes == ["BAD_USER_INPUT"]
    assert (await _report(http_url, reporter, "USER", reporter.id)).codes == ["BAD_USER_INPUT"]
    assert (await _report(http_url, outsider, "MESSAGE", message["id"])).codes == ["NOT_FOUND"]
    bad_reason = await _report(http_url, reporter, "POST", theirs["id"], reason="RUDE")
    assert bad_reason.codes == ["BAD_USER_INPUT"]
    assert (await _report(http_url, None, "POST", theirs["id"])).codes == ["UNAUTHENTICATED"]
    assert await _reports_by(db, reporter) == 0
    assert await _reports_by(db, outsider) == 0

    first = (await _report(http_url, reporter, "POST", theirs["id"], "HATE")).ok()["report"]
    assert first["targetType"] == "POST"
    assert first["targetId"] == theirs["id"]
    assert first["reason"] == "HATE"
    assert first["note"] == "n"
    assert first["status"] == "OPEN"
    again = await _report(http_url, reporter, "POST", theirs["id"], "SPAM")
    assert again.codes == ["BAD_USER_INPUT"]
    reported = await _report(http_url, reporter, "MESSAGE", message["id"])
    assert reported.ok()["report"]["targetType"] == "MESSAGE"
    assert await _reports_by(db, reporter) == 2


async def test_the_queue_groups_orders_and_is_for_moderators_only(
    http_url: str, db: Database, settings: Settings
) -> None:
    one, two, three, author = await make_members(db, settings, 4, prefix="q")
    moderator = await _moderator(db, settings)
    spam = await create_post(http_url, author, "cheap watches")
    violent = await create_post(http_url, author, "a threat")
    for reporter in (one, two):
        (await _report(http_url, reporter, "POST", spam["id"], "SPAM")).ok()
    (await _report(http_url, three, "POST", spam["id"], "OTHER")).ok()
    (await _report(http_url, one, "USER", author.id, "HARASSMENT")).ok()
    (await _report(http_url, two, "POST", violent["id"], "VIOLENCE")).ok()

    assert (await call(http_url, one, QUEUE)).codes == ["FORBIDDEN"]
    assert (
        await call(http_url, one, MODERATE, type="POST", id=spam["id"], action="REMOVE")
    ).codes == ["FORBIDDEN"]
    queue = await _queue(http_url, moderator)
    ours = [n for n in queue if n["targetId"] in {spam["id"], violent["id"], author.id}]
    assert [n["targetId"] for n in ours] == [violent["id"], author.id, spam["id"]]
    grouped = ours[2]
    assert grouped["reportCount"] == 3
    assert grouped["reasons"] == ["OTHER", "SPAM"]
    assert grouped["text"] == "cheap watches"
    assert grouped["author"] == {"id": author.id}
    assert grouped["state"] == "VISIBLE"
    assert grouped["firstReportedAt"] <= grouped["lastReportedAt"]
    assert ours[1]["author"] == {"id": author.id}
    # Severity first, then the oldest first report, across the whole queue.
    ranks = {"SELF_HARM": 3, "VIOLENCE": 3, "HATE": 2, "HARASSMENT": 2, "SEXUAL": 2}
    severities = [max(ranks.get(r, 1) for r in n["reasons"]) for n in queue]
    assert severities == sorted(severities, reverse=True)
    # Page by page, one at a time, the same order.
    first = (await call(http_url, moderator, QUEUE, first=1)).ok()["moderationQueue"]
    cursor = first["pageInfo"]["endCursor"]
    second = (await call(http_url, moderator, QUEUE, first=1, after=cursor)).ok()
    paged = [first["edges"][0]["node"], second["moderationQueue"]["edges"][0]["node"]]
    assert [n["targetId"] for n in paged] == [n["targetId"] for n in queue[:2]]

    dismissed = await _moderate(http_url, moderator, "POST", spam["id"], "DISMISS")
    assert dismissed["resolvedReports"] == 3
    assert dismissed["state"] == "VISIBLE"
    assert spam["id"] not in {n["targetId"] for n in await _queue(http_url, moderator)}
    resolved = await _queue(http_url, moderator, "RESOLVED")
    assert spam["id"] in {n["targetId"] for n in resolved}
    # A report after the dismissal opens the target again.
    (await _report(http_url, one, "POST", spam["id"], "SPAM")).ok()


async def test_remove_and_restore_a_post(http_url: str, db: Database, settings: Settings) -> None:
    author, follower, reporter = await make_members(db, settings, 3, prefix="rm")
    moderator = await _moderator(db, settings)
    (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    word = f"zq{uuid.uuid4().hex[:10]}"
    post_ = await create_post(http_url, author, f"a post about {word}")
    (await call(http_url, follower, COMMENT, id=post_["id"], text="nice")).ok()

    async def in_feed() -> bool:
        return post_["id"] in await feed_ids(http_url, follower)

    await wait_until(in_feed, timeout_s=FANOUT_WAIT_S, message="the post in the feed")

    async def notified() -> int:
        reply = await call(http_url, author, "query { unreadNotificationCount }")
        count: int = reply.ok()["unreadNotificationCount"]
        return count

    async def both_notified() -> bool:  # the follow's and the comment's
        return await notified() == 2

    await wait_until(both_notified, timeout_s=FANOUT_WAIT_S, message="the notifications")
    (await _report(http_url, reporter, "POST", post_["id"], "HATE")).ok()

    removed = await _moderate(http_url, moderator, "POST", post_["id"], "REMOVE")
    assert removed["state"] == "REMOVED"
    assert removed["resolvedReports"] == 1
    assert removed["item"] == {"reportCount": 1, "state": "REMOVED"}
    assert (await call(http_url, follower, POST, id=post_["id"])).ok() == {"post": None}
    assert (await call(http_url, follower, SEARCH, q=word)).ok()["searchPosts"]["edges"] == []

    async def out_of_feed() -> bool:
        return post_["id"] not in await feed_ids(http_url, follower)

    await wait_until(out_of_feed, timeout_s=FANOUT_WAIT_S, message="the post out of the feed")
    assert await notified() == 1  # the follow's: the post's is hidden with it
    # The author cannot delete it out of moderation's hands.
    deleted = await call(
        http_url, author, "mutation($id: ID!) { deletePost(id: $id) }", id=post_["id"]
    )
    assert deleted.codes == ["NOT_FOUND"]

    restored = await _moderate(http_url, moderator, "POST", post_["id"], "RESTORE")
    assert restored["state"] == "VISIBLE"
    assert restored["resolvedReports"] == 0
    assert (await call(http_url, follower, POST, id=post_["id"])).ok()["post"]["id"] == post_["id"]
    hits = (await call(http_url, follower, SEARCH, q=word)).ok()["searchPosts"]["edges"]
    assert [h["node"]["id"] for h in hits] == [post_["id"]]
    comments = (await call(http_url, follower, COMMENTS, id=post_["id"])).ok()
    assert len(comments["post"]["comments"]["edges"]) == 1
    await wait_until(in_feed, timeout_s=FANOUT_WAIT_S, message="the post back in the feed")
    assert await notified() == 2

    rows = await db.fetch(
        "SELECT action, actor_id, note FROM audit_log WHERE target_id = $1 ORDER BY id",
        uuid.UUID(post_["id"]),
    )
    assert [(r["action"], r["actor_id"], r["note"]) for r in rows] == [
        ("REMOVE", moderator.uuid, "why"),
        ("RESTORE", moderator.uuid, "why"),
    ]


async def test_remove_a_comment(http_url: str, db: Database, settings: Settings) -> None:
    author, commenter = await make_members(db, settings, 2, prefix="rc")
    moderator = await _moderator(db, settings)
    post_ = await create_post(http_url, author, "comment on this")
    comment = (await call(http_url, commenter, COMMENT, id=post_["id"], text="rude")).ok()
    comment_id = comment["createComment"]["id"]
    (await _report(http_url, author, "COMMENT", comment_id, "HARASSMENT")).ok()
    removed = await _moderate(http_url, moderator, "COMMENT", comment_id, "REMOVE")
    assert removed["state"] == "REMOVED"
    listed = (await call(http_url, author, COMMENTS, id=post_["id"])).ok()
    assert listed["post"]["comments"]["edges"] == []
    post_count = (await call(http_url, author, POST, id=post_["id"])).ok()["post"]
    assert post_count["commentCount"] == 0
    await _moderate(http_url, moderator, "COMMENT", comment_id, "RESTORE")
    listed = (await call(http_url, author, COMMENTS, id=post_["id"])).ok()
    assert [e["node"]["id"] for e in listed["post"]["comments"]["edges"]] == [comment_id]


async def test_removing_a_share_takes_it_off_the_share_count(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, sharer = await make_members(db, settings, 2, prefix="rs")
    moderator = await _moderator(db, settings)
    original = await create_post(http_url, author, "worth sharing")
    share = (await call(http_url, sharer, SHARE, id=original["id"])).ok()["sharePost"]

    async def shares() -> int:
        found = (await call(http_url, author, SHARE_COUNT, id=original["id"])).ok()
        return int(found["post"]["shareCount"])

    assert await shares() == 1
    (await _report(http_url, author, "POST", share["id"])).ok()
    await _moderate(http_url, moderator, "POST", share["id"], "REMOVE")
    assert await shares() == 0
    await _moderate(http_url, moderator, "POST", share["id"], "RESTORE")
    assert await shares() == 1


async def test_suspend_and_unsuspend(http_url: str, db: Database, settings: Settings) -> None:
    account = await register(http_url, prefix="susp")
    suspect = Member(account.id, account.username, account.access_token)
    (viewer,) = await make_members(db, settings, 1, prefix="sv")
    moderator = await _moderator(db, settings)
    post_ = await create_post(http_url, suspect, "before the suspension")
    (await _report(http_url, viewer, "USER", suspect.id, "HARASSMENT")).ok()
    login = {"input": {"login": account.username, "password": account.password}}

    async with raw_socket(http_url, suspect.token) as ws:
        await start(ws, "feed", "subscription { feedUpdated { postId } }")
        suspended = await _moderate(http_url, moderator, "USER", suspect.id, "SUSPEND", hours=48)
        assert suspended["state"] == "SUSPENDED"
        assert suspended["suspendedUntil"] is not None
        assert suspended["resolvedReports"] == 1
        received, _ = await until_closed(ws, timeout_s=10)
    ended = [m for m in received if m.get("type") == "error" and m.get("id") == "feed"]
    assert ended, received
    assert ended[0]["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    assert (await call(http_url, suspect, ME)).codes == ["UNAUTHENTICATED"]
    refused = await post(http_url, LOGIN, login)
    assert refused.codes == ["FORBIDDEN"]
    assert "suspended until" in refused.errors[0]["message"]
    assert (await call(http_url, viewer, POST, id=post_["id"])).ok() == {"post": None}
    assert suspect.id not in await _people(http_url, viewer, suspect.username)

    lifted = await _moderate(http_url, moderator, "USER", suspect.id, "UNSUSPEND")
    assert lifted["state"] == "VISIBLE"
    assert lifted["suspendedUntil"] is None
    (await post(http_url, LOGIN, login)).ok()
    assert (await call(http_url, viewer, POST, id=post_["id"])).ok()["post"]["id"] == post_["id"]
    assert suspect.id in await _people(http_url, viewer, suspect.username)

    indefinitely = await _moderate(http_url, moderator, "USER", suspect.id, "SUSPEND")
    assert indefinitely["suspendedUntil"].startswith("9999")
    refused = await post(http_url, LOGIN, login)
    assert "indefinitely" in refused.errors[0]["message"]
    warned = await call(http_url, moderator, MODERATE, type="POST", id=post_["id"], action="WARN")
    assert warned.codes == ["BAD_USER_INPUT"]
    # A suspension whose time is up ends at the next login, and its content comes back.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE users SET suspended_until = now() - interval '1 second' WHERE id = $1",
            suspect.uuid,
        )
    (await post(http_url, LOGIN, login)).ok()
    assert (await call(http_url, viewer, POST, id=post_["id"])).ok()["post"]["id"] == post_["id"]
    lifted_by = await db.fetchval(
        "SELECT actor_id IS NULL FROM audit_log WHERE target_id = $1 AND action = 'UNSUSPEND'"
        " ORDER BY id DESC LIMIT 1",
        suspect.uuid,
    )
    assert lifted_by is True


async def test_a_removed_message_shows_as_removed(
    http_url: str, db: Database, settings: Settings
) -> None:
    sender, member = await make_members(db, settings, 2, prefix="msg")
    moderator = await _moderator(db, settings)
    room = await room_of(http_url, sender, member)
    (await send(http_url, sender, room, "before")).ok()
    message = (await send(http_url, sender, room, "nasty words")).ok()["sendMessage"]
    (await send(http_url, sender, room, "after")).ok()
    (await _report(http_url, member, "MESSAGE", message["id"], "HARASSMENT")).ok()

    queued = [n for n in await _queue(http_url, moderator) if n["targetId"] == message["id"]]
    assert queued[0]["message"] == {
        "id": message["id"],
        "roomId": room,
        "seq": message["seq"],
        "text": "nasty words",
        "senderId": sender.id,
    }
    assert queued[0]["author"] == {"id": sender.id}

    removed = await _moderate(http_url, moderator, "MESSAGE", message["id"], "REMOVE")
    assert removed["state"] == "REMOVED"
    nodes = [
        e["node"]
        for e in (await call(http_url, member, MESSAGES, room=room)).ok()["messages"]["edges"]
    ]
    assert [(n["text"], n["deleted"], n["removedByModeration"]) for n in nodes] == [
        ("before", False, False),
        ("", True, True),
        ("after", False, False),
    ]
    # The report keeps its snapshot of that message alone.
    snapshot = json.loads(
        await db.fetchval(
            "SELECT snapshot FROM reports WHERE target_id = $1", uuid.UUID(message["id"])
        )
    )
    assert snapshot["text"] == "nasty words"
    assert set(snapshot) == {
        "message_id",
        "room_id",
        "seq",
        "sender_id",
        "text",
        "media_ids",
        "created_at",
    }


async def test_the_audit_log_is_append_only_and_admins_read_it(
    http_url: str, db: Database, settings: Settings
) -> None:
    (target,) = await make_members(db, settings, 1, prefix="aud")
    moderator = await _moderator(db, settings)
    admin = await _moderator(db, settings, role="admin")
    await nova("users", "grant", target.username, "moderator", "--note", "new hire")
    await nova("users", "revoke", target.username, "moderator")
    rows = await db.fetch(
        "SELECT action, actor_id, note, details FROM audit_log WHERE target_id = $1 ORDER BY id",
        target.uuid,
    )
    assert [(r["action"], r["actor_id"], r["note"]) for r in rows] == [
        ("ROLE_GRANTED", None, "new hire"),
        ("ROLE_REVOKED", None, None),
    ]
    assert json.loads(rows[0]["details"])["role"] == "moderator"

    logged = json.loads(await nova("audit", "--json", "--limit", "200"))
    assert {"ROLE_GRANTED", "ROLE_REVOKED"} <= {
        e["action"] for e in logged if e["target_id"] == target.id
    }
    table = await nova("audit", "--limit", "200")
    assert "ROLE_GRANTED" in table
    assert "operator" in table

    assert (await call(http_url, moderator, LOG)).codes == ["FORBIDDEN"]
    page = (await call(http_url, admin, LOG, first=2)).ok()["moderationLog"]
    assert len(page["edges"]) == 2
    assert page["pageInfo"]["hasNextPage"] is True
    nxt = (await call(http_url, admin, LOG, first=2, after=page["pageInfo"]["endCursor"])).ok()
    first_ids = [int(e["node"]["id"]) for e in page["edges"]]
    next_ids = [int(e["node"]["id"]) for e in nxt["moderationLog"]["edges"]]
    assert min(first_ids) > max(next_ids)

    async with db.connection() as conn:
        for statement in (
            "UPDATE audit_log SET note = 'rewritten' WHERE target_id = $1",
            "DELETE FROM audit_log WHERE target_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement, target.uuid)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE audit_log")
    assert (
        await db.fetchval("SELECT count(*) FROM audit_log WHERE target_id = $1", target.uuid) == 2
    )


async def test_the_blocklist_holds_a_post_until_restored(
    http_url: str, db: Database, settings: Settings
) -> None:
    author, follower = await make_members(db, settings, 2, prefix="bl")
    moderator = await _moderator(db, settings)
    (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    created = await call(
        http_url,
        author,
        "mutation($t: String!) { createPost(input: {text: $t}) { id held } }",
        t="buy HeldWord today",
    )
    held = created.ok()["createPost"]
    assert held["held"] is True
    assert (await call(http_url, follower, POST, id=held["id"])).ok() == {"post": None}
    own = "query($id: ID!) { post(id: $id) { id held } }"
    assert (await call(http_url, author, own, id=held["id"])).ok()["post"] == held
    queued = [n for n in await _queue(http_url, moderator) if n["targetId"] == held["id"]]
    assert queued[0]["reasons"] == ["OTHER"]
    assert queued[0]["state"] == "HELD"
    notes = await db.fetch(
        "SELECT reporter_id, note FROM reports WHERE target_id = $1", uuid.UUID(held["id"])
    )
    assert [(r["reporter_id"], r["note"]) for r in notes] == [(None, "blocklist: heldword")]

    linked = await create_post(http_url, author, "see https://www.held.example/page")
    assert (await call(http_url, follower, POST, id=linked["id"])).ok() == {"post": None}
    # Whole words only: no hold.
    free = await create_post(http_url, author, "heldwords and notheld.example.org are fine")
    assert (await call(http_url, follower, POST, id=free["id"])).ok()["post"] is not None

    published = await _moderate(http_url, moderator, "POST", held["id"], "RESTORE")
    assert published["state"] == "VISIBLE"
    assert (await call(http_url, follower, POST, id=held["id"])).ok()["post"]["id"] == held["id"]

    async def in_feed() -> bool:
        return held["id"] in await feed_ids(http_url, follower)

    await wait_until(in_feed, timeout_s=FANOUT_WAIT_S, message="the published post in the feed")
    kept = await _moderate(http_url, moderator, "POST", linked["id"], "REMOVE")
    assert kept["state"] == "REMOVED"
    assert (await call(http_url, follower, POST, id=linked["id"])).ok() == {"post": None}


async def test_remove_and_restore_a_story(http_url: str, db: Database, settings: Settings) -> None:
    author, follower = await make_members(db, settings, 2, prefix="st")
    moderator = await _moderator(db, settings)
    (await call(http_url, follower, FOLLOW, id=author.id)).ok()
    story = await story_of(http_url, author, "a story to report")
    (await _report(http_url, follower, "STORY", story["id"], "SEXUAL")).ok()
    queued = [n for n in await _queue(http_url, moderator) if n["targetId"] == story["id"]]
    assert queued[0]["text"] == "a story to report"
    assert len(queued[0]["mediaIds"]) == 1

    await _moderate(http_url, moderator, "STORY", story["id"], "REMOVE")
    assert (await call(http_url, follower, STORY, id=story["id"])).ok() == {"story": None}
    assert story["id"] not in {
        s["id"] for entry in await feed(http_url, follower) for s in entry["stories"]
    }
    await _moderate(http_url, moderator, "STORY", story["id"], "RESTORE")
    assert (await call(http_url, follower, STORY, id=story["id"])).ok()["story"]["id"] == story[
        "id"
    ]


async def test_reports_are_rate_limited_per_user(
    http_url: str, db: Database, settings: Settings
) -> None:
    reporter, *targets = await make_members(db, settings, settings.rate_reports_burst + 2)
    for target in targets[: settings.rate_reports_burst]:
        (await _report(http_url, reporter, "USER", target.id)).ok()
    refused = await _report(http_url, reporter, "USER", targets[-1].id)
    assert refused.codes == ["RATE_LIMITED"]
    assert refused.errors[0]["extensions"]["retryAfter"] > 0
    assert await _reports_by(db, reporter) == settings.rate_reports_burst
