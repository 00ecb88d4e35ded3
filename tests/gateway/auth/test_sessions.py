"""Your own sessions through the running Serve app: listing the devices signed in, signing
one out, and changing the password (other sessions end, a notice is mailed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deployments.settings import Settings
from deployments.stack import Stack
from storage.db import Database
from tests.support.chat import ADDED, raw_socket, room_of, send, start
from tests.support.graphql import LOGIN, Account, post, register
from tests.support.mailbox import wait_for_mail
from tests.support.social import Member, make_members
from tests.support.subscriptions import watching_room

pytestmark = pytest.mark.stack

ME = "query { me { id } }"
SESSIONS = """
query($first: Int, $after: String) {
  sessions(first: $first, after: $after) {
    edges { cursor node { id current userAgent ip createdAt lastUsedAt expiresAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
REVOKE = "mutation($id: ID!) { revokeSession(id: $id) }"
CHANGE = """
mutation($current: String!, $new: String!) {
  changePassword(currentPassword: $current, newPassword: $new)
}
"""
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }"


async def sign_in(http_url: str, account: Account, password: str, device: str) -> dict[str, Any]:
    """Another session for the account, from a device named by its User-Agent."""
    reply = await post(
        http_url,
        LOGIN,
        {"input": {"login": account.username, "password": password}},
        headers={"user-agent": device},
    )
    login: dict[str, Any] = reply.ok()["login"]
    return login


async def me_works(http_url: str, token: str) -> bool:
    reply = await post(http_url, ME, token=token)
    if reply.status == 401:
        assert reply.codes == ["UNAUTHENTICATED"]
        return False
    reply.ok()
    return True


async def test_sessions_are_listed_and_one_can_be_signed_out(http_url: str) -> None:
    account = await register(http_url)
    phone = await sign_in(http_url, account, account.password, "NovaPhone/1.0")

    reply = await post(http_url, SESSIONS, token=account.access_token)
    nodes = [edge["node"] for edge in reply.ok()["sessions"]["edges"]]
    assert len(nodes) == 2
    assert nodes[0]["userAgent"] == "NovaPhone/1.0", "newest sign-in first"
    assert [n["current"] for n in nodes] == [False, True]
    assert all(n["ip"] == "127.0.0.1" for n in nodes)
    phone_session = nodes[0]["id"]

    page = (await post(http_url, SESSIONS, {"first": 1}, token=account.access_token)).ok()
    assert page["sessions"]["pageInfo"]["hasNextPage"] is True
    rest = await post(
        http_url,
        SESSIONS,
        {"first": 1, "after": page["sessions"]["pageInfo"]["endCursor"]},
        token=account.access_token,
    )
    assert [e["node"]["current"] for e in rest.ok()["sessions"]["edges"]] == [True]

    revoked = await post(http_url, REVOKE, {"id": phone_session}, token=account.access_token)
    assert revoked.ok() == {"revokeSession": True}
    assert not await me_works(http_url, phone["accessToken"]), "its access token dies at once"
    refreshed = await post(http_url, REFRESH, {"t": phone["refreshToken"]})
    assert refreshed.codes == ["UNAUTHENTICATED"]
    assert await me_works(http_url, account.access_token), "the other session goes on"

    again = await post(http_url, REVOKE, {"id": phone_session}, token=account.access_token)
    assert again.ok() == {"revokeSession": False}
    listed = (await post(http_url, SESSIONS, token=account.access_token)).ok()
    assert [e["node"]["current"] for e in listed["sessions"]["edges"]] == [True]


async def test_another_users_session_is_not_found_and_bad_ids_are_refused(
    http_url: str,
) -> None:
    owner, stranger = await register(http_url), await register(http_url)
    listed = (await post(http_url, SESSIONS, token=owner.access_token)).ok()
    owners_session = listed["sessions"]["edges"][0]["node"]["id"]

    other = await post(http_url, REVOKE, {"id": owners_session}, token=stranger.access_token)
    assert other.codes == ["NOT_FOUND"]
    assert await me_works(http_url, owner.access_token)
    bad = await post(http_url, REVOKE, {"id": "not-an-id"}, token=stranger.access_token)
    assert bad.codes == ["BAD_USER_INPUT"]
    anonymous = await post(http_url, SESSIONS)
    assert anonymous.codes == ["UNAUTHENTICATED"]


async def test_paging_sessions_skips_and_repeats_none_while_one_refreshes(
    http_url: str,
) -> None:
    account = await register(http_url)
    for device in ("NovaTablet/1.0", "NovaPhone/1.0"):
        await sign_in(http_url, account, account.password, device)

    first = (await post(http_url, SESSIONS, {"first": 1}, token=account.access_token)).ok()
    seen = [e["node"]["id"] for e in first["sessions"]["edges"]]
    # The oldest session, on the last page, signs in again before the next page is read.
    refreshed = await post(http_url, REFRESH, {"t": account.refresh_token})
    token = refreshed.ok()["refreshToken"]["accessToken"]
    after = first["sessions"]["pageInfo"]["endCursor"]
    while after is not None:
        page = (await post(http_url, SESSIONS, {"first": 1, "after": after}, token=token)).ok()
        seen += [e["node"]["id"] for e in page["sessions"]["edges"]]
        info = page["sessions"]["pageInfo"]
        after = info["endCursor"] if info["hasNextPage"] else None

    everything = (await post(http_url, SESSIONS, {"first": 10}, token=token)).ok()
    all_ids = [e["node"]["id"] for e in everything["sessions"]["edges"]]
    assert len(all_ids) == 3
    assert seen == all_ids, "every session once, in one order"


async def test_changing_the_password_ends_other_sessions_and_mails_a_notice(
    http_url: str, stack: Stack
) -> None:
    account = await register(http_url)
    laptop = await sign_in(http_url, account, account.password, "NovaLaptop/2.0")
    new_password = "a much better passphrase 42"

    wrong = await post(
        http_url,
        CHANGE,
        {"current": "not my password", "new": new_password},
        token=account.access_token,
    )
    assert wrong.codes == ["BAD_USER_INPUT"]
    weak = await post(
        http_url,
        CHANGE,
        {"current": account.password, "new": "short"},
        token=account.access_token,
    )
    assert weak.codes == ["BAD_USER_INPUT"]
    same = await post(
        http_url,
        CHANGE,
        {"current": account.password, "new": account.password},
        token=account.access_token,
    )
    assert same.codes == ["BAD_USER_INPUT"]
    assert await me_works(http_url, laptop["accessToken"]), "refused changes change nothing"

    changed = await post(
        http_url,
        CHANGE,
        {"current": account.password, "new": new_password},
        token=account.access_token,
    )
    assert changed.ok() == {"changePassword": True}
    assert await me_works(http_url, account.access_token), "the session that changed it stays"
    assert not await me_works(http_url, laptop["accessToken"])
    assert (await post(http_url, REFRESH, {"t": laptop["refreshToken"]})).codes == [
        "UNAUTHENTICATED"
    ]

    old = await post(
        http_url, LOGIN, {"input": {"login": account.username, "password": account.password}}
    )
    assert old.codes == ["UNAUTHENTICATED"]
    await sign_in(http_url, account, new_password, "NovaLaptop/2.0")

    notice = await wait_for_mail(
        Path(stack.layout.mail_dir),
        to=account.email,
        subject_contains="password was changed",
        timeout_s=30,
    )
    body = notice.get_content()
    assert "signed out" in body
    assert "http" not in body, "a notice carries no link to click"


LOGOUT = "mutation($t: String!) { logout(refreshToken: $t) }"
NOTIFIED = "subscription { notificationAdded { id kind } }"


@pytest.mark.parametrize("revocation", ["changePassword", "revokeSession", "logout"])
async def test_a_revoked_sessions_live_subscriptions_end_at_once(
    http_url: str, db: Database, deployed: Settings, redis: Any, revocation: str
) -> None:
    """A stolen token's open socket does not outlive the session it came from: when the
    owner changes the password, signs that device out, or the device logs out, its running
    `messageAdded` and `notificationAdded` end at once with UNAUTHENTICATED, nothing sent
    afterwards reaches it, and whatever it asks next is refused."""
    account = await register(http_url, prefix="stolen")
    stolen = await sign_in(http_url, account, account.password, "Thief/1.0")
    (friend,) = await make_members(db, deployed, 1, prefix="friend")
    owner = Member(account.id, account.username, account.access_token)
    room = await room_of(http_url, owner, friend)
    async with raw_socket(http_url, stolen["accessToken"]) as ws:
        await start(ws, "messages", ADDED, room=room)
        await start(ws, "notifications", NOTIFIED)
        await watching_room(redis, room, account.id)
        (await send(http_url, friend, room, "before")).ok()
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["payload"]["data"] == {
            "messageAdded": {"seq": 1, "text": "before", "sender": {"id": friend.id}}
        }

        if revocation == "changePassword":
            changed = await post(
                http_url,
                CHANGE,
                {"current": account.password, "new": "a much better passphrase 42"},
                token=account.access_token,
            )
            assert changed.ok() == {"changePassword": True}
        elif revocation == "revokeSession":
            listed = (await post(http_url, SESSIONS, token=account.access_token)).ok()
            (thiefs,) = [
                e["node"]["id"]
                for e in listed["sessions"]["edges"]
                if e["node"]["userAgent"] == "Thief/1.0"
            ]
            revoked = await post(http_url, REVOKE, {"id": thiefs}, token=account.access_token)
            assert revoked.ok() == {"revokeSession": True}
        else:
            logout = await post(
                http_url, LOGOUT, {"t": stolen["refreshToken"]}, token=stolen["accessToken"]
            )
            assert logout.ok() == {"logout": True}
        (await send(http_url, friend, room, "after")).ok()

        delivered: list[Any] = []
        ended: dict[str, list[str]] = {}
        try:
            async with asyncio.timeout(30):
                while len(ended) < 2:
                    message = json.loads(await ws.recv())
                    if message["type"] == "next":
                        delivered.append(message["payload"]["data"])
                    elif message["type"] == "error":
                        ended[message["id"]] = [e["extensions"]["code"] for e in message["payload"]]
        except TimeoutError:
            pass
        assert delivered == [], f"still delivering after {revocation}: {delivered}"
        assert ended == {
            "messages": ["UNAUTHENTICATED"],
            "notifications": ["UNAUTHENTICATED"],
        }, f"subscriptions still running after {revocation}: {ended}"
        await start(ws, "again", NOTIFIED)
        again = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert (again["id"], again["type"]) == ("again", "next")
        assert again["payload"]["data"] is None
        assert [e["extensions"]["code"] for e in again["payload"]["errors"]] == ["UNAUTHENTICATED"]
