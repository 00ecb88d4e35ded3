"""Identity through the running Serve app: accounts, sessions, tokens, mail, profiles, blocks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import cast

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gql import Client, gql
from gql.transport.httpx import HTTPXAsyncTransport
from jwt.algorithms import RSAAlgorithm

from deployments.settings import Settings
from deployments.stack import Stack
from gateway.auth.tokens import KeyRing
from storage.db import Database
from storage.secrets import Sealer
from tests.conftest import nova, wait_until
from tests.support.graphql import LOGIN, PASSWORD, REGISTER, post, register, unique_name
from tests.support.mailbox import extract_token, wait_for_mail

pytestmark = pytest.mark.stack

ME = "query { me { id username displayName bio avatarUrl emailVerified } }"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def _me_status(http_url: str, token: str) -> tuple[int, list[str]]:
    reply = await post(http_url, ME, token=token)
    return reply.status, reply.codes


# -- register and login ------------------------------------------------------------------


async def test_register_returns_tokens_and_the_new_user(http_url: str) -> None:
    account = await register(http_url)
    header = jwt.get_unverified_header(account.access_token)
    claims = _claims(account.access_token)
    assert header["alg"] == "RS256"
    assert header["kid"]
    assert claims["sub"] == account.id
    assert claims["roles"] == ["user"]
    assert claims["jti"]
    assert claims["sid"]
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == 15 * 60
    me = (await post(http_url, ME, token=account.access_token)).ok()["me"]
    assert me["username"] == account.username
    assert me["emailVerified"] is False


@pytest.mark.parametrize(
    ("username", "email", "password", "fragment"),
    [
        ("ab", "ab@example.com", PASSWORD, "username"),
        ("bad name!", "x@example.com", PASSWORD, "username"),
        ("x" * 31, "y@example.com", PASSWORD, "username"),
        ("valid_name_1", "not-an-email", PASSWORD, "email"),
        ("valid_name_2", "v2@example.com", "short", "at least 10"),
        ("valid_name_3x", "v3@example.com", "valid_name_3x", "username or email"),
        ("valid_name_4", "valid_name_4@example.com", "valid_name_4@example.com", "username"),
    ],
)
async def test_register_refuses_bad_input_and_creates_nothing(
    http_url: str, db: Database, username: str, email: str, password: str, fragment: str
) -> None:
    reply = await post(
        http_url,
        REGISTER,
        {"input": {"email": email, "username": username, "password": password}},
    )
    assert reply.codes == ["BAD_USER_INPUT"], reply.body
    assert fragment in reply.errors[0]["message"]
    count = await db.fetchval(
        "SELECT count(*) FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($2)",
        username,
        email,
    )
    assert count == 0


async def test_usernames_and_emails_are_unique_case_insensitively(http_url: str) -> None:
    first = await register(http_url)
    same_name = await post(
        http_url,
        REGISTER,
        {
            "input": {
                "email": f"other_{first.email}",
                "username": first.username.upper(),
                "password": PASSWORD,
            }
        },
    )
    assert same_name.codes == ["BAD_USER_INPUT"]
    assert "username" in same_name.errors[0]["message"]
    same_email = await post(
        http_url,
        REGISTER,
        {
            "input": {
                "email": first.email.upper(),
                "username": unique_name(),
                "password": PASSWORD,
            }
        },
    )
    assert same_email.codes == ["BAD_USER_INPUT"]
    assert "email" in same_email.errors[0]["message"]


async def test_login_with_username_or_email_with_a_graphql_client(http_url: str) -> None:
    account = await register(http_url)
    transport = HTTPXAsyncTransport(url=f"{http_url}/graphql", timeout=30)
    async with Client(transport=transport) as session:
        for login in (account.username.upper(), account.email):
            request = gql(LOGIN)
            request.variable_values = {"input": {"login": login, "password": account.password}}
            result = await session.execute(request)
            assert result["login"]["user"]["id"] == account.id
            assert result["login"]["refreshToken"] != account.refresh_token


async def test_wrong_password_and_unknown_account_are_the_same_unauthenticated(
    http_url: str,
) -> None:
    account = await register(http_url)
    wrong = await post(
        http_url, LOGIN, {"input": {"login": account.username, "password": "wrong password!"}}
    )
    unknown = await post(http_url, LOGIN, {"input": {"login": unique_name(), "password": PASSWORD}})
    assert wrong.codes == unknown.codes == ["UNAUTHENTICATED"]
    assert wrong.errors[0]["message"] == unknown.errors[0]["message"]


async def _spend_login_budget(http_url: str, login: str) -> None:
    """Fail to sign in as `login` until the per-account budget refuses (bounded)."""
    for _ in range(30):
        reply = await post(
            http_url, LOGIN, {"input": {"login": login, "password": "wrong password!"}}
        )
        if reply.codes == ["RATE_LIMITED"]:
            return
        assert reply.codes == ["UNAUTHENTICATED"], reply.body
    raise AssertionError(f"30 failed logins as {login!r} were never rate limited")


def _dotted_capital_i(text: str) -> str:
    """`text` with its first `i` as U+0130: PostgreSQL's lower() reads it as `i`, Python's
    lower() as `i` plus a combining dot."""
    assert "i" in text
    return text.replace("i", "\u0130", 1)


async def test_login_budget_is_the_accounts_whatever_the_spelling(http_url: str) -> None:
    account = await register(http_url, prefix="i")
    await _spend_login_budget(http_url, account.username)
    # Every other name for the same account shares its budget, even with the right password.
    for login in (
        account.username.upper(),
        _dotted_capital_i(account.username),
        account.email,
        account.email.upper(),
        _dotted_capital_i(account.email),
    ):
        reply = await post(
            http_url, LOGIN, {"input": {"login": login, "password": account.password}}
        )
        assert reply.codes == ["RATE_LIMITED"], f"{login!r} got a fresh budget: {reply.body}"


async def test_password_reset_budget_is_the_accounts_whatever_the_spelling(
    http_url: str,
) -> None:
    account = await register(http_url, prefix="i")
    for _ in range(30):
        reply = await post(http_url, RESET_REQUEST, {"e": account.email})
        if reply.codes == ["RATE_LIMITED"]:
            break
        assert reply.ok() == {"requestPasswordReset": True}
    else:
        raise AssertionError("30 reset requests were never rate limited")
    for address in (account.email.upper(), _dotted_capital_i(account.email)):
        reply = await post(http_url, RESET_REQUEST, {"e": address})
        assert reply.codes == ["RATE_LIMITED"], f"{address!r} got a fresh budget: {reply.body}"


async def test_a_login_with_a_nul_character_is_refused_in_novas_words(http_url: str) -> None:
    account = await register(http_url)
    for login in (f"{account.username}\u0000", f"{account.email}\u0000x"):
        reply = await post(
            http_url, LOGIN, {"input": {"login": login, "password": account.password}}
        )
        assert reply.status == 200
        assert reply.codes in (["UNAUTHENTICATED"], ["BAD_USER_INPUT"]), reply.body
        message = reply.errors[0]["message"]
        for driver_words in ("0x00", "UTF8", "byte sequence", "escape sequence"):
            assert driver_words not in message, message


async def test_me_without_a_token_is_unauthenticated(http_url: str) -> None:
    reply = await post(http_url, ME)
    assert reply.status == 200
    assert reply.codes == ["UNAUTHENTICATED"]


async def test_user_by_id_or_username_hides_private_fields(http_url: str) -> None:
    alice = await register(http_url, "alice")
    bob = await register(http_url, "bob")
    query = "query($id: ID, $username: String) { user(id: $id, username: $username) { id username emailVerified } }"  # noqa: E501
    by_id = (await post(http_url, query, {"id": bob.id}, token=alice.access_token)).ok()
    by_name = (await post(http_url, query, {"username": bob.username.upper()})).ok()
    assert (
        by_id["user"]
        == by_name["user"]
        == {
            "id": bob.id,
            "username": bob.username,
            "emailVerified": None,
        }
    )
    missing = (await post(http_url, query, {"id": str(uuid.uuid4())})).ok()
    assert missing["user"] is None
    both = await post(http_url, query, {"id": bob.id, "username": bob.username})
    assert both.codes == ["BAD_USER_INPUT"]
    malformed = await post(http_url, query, {"id": "not-a-uuid"})
    assert malformed.codes == ["BAD_USER_INPUT"]


# -- refresh, reuse, logout ----------------------------------------------------------------

REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }"
LOGOUT = "mutation($t: String!) { logout(refreshToken: $t) }"


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(http_url: str) -> None:
    account = await register(http_url)
    first = (await post(http_url, REFRESH, {"t": account.refresh_token})).ok()["refreshToken"]
    assert first["refreshToken"] != account.refresh_token
    second = (await post(http_url, REFRESH, {"t": first["refreshToken"]})).ok()["refreshToken"]
    assert (await _me_status(http_url, second["accessToken"])) == (200, [])

    reuse = await post(http_url, REFRESH, {"t": account.refresh_token})
    assert reuse.codes == ["UNAUTHENTICATED"]
    # The thief's and the user's latest tokens die with the family.
    latest = await post(http_url, REFRESH, {"t": second["refreshToken"]})
    assert latest.codes == ["UNAUTHENTICATED"]
    assert (await _me_status(http_url, second["accessToken"])) == (401, ["UNAUTHENTICATED"])


async def test_unknown_refresh_token_is_unauthenticated(http_url: str) -> None:
    reply = await post(http_url, REFRESH, {"t": "nrt_" + "x" * 43})
    assert reply.codes == ["UNAUTHENTICATED"]


async def test_logout_revokes_the_session_and_denies_the_access_token(http_url: str) -> None:
    account = await register(http_url)
    other = (
        await post(http_url, LOGIN, {"input": {"login": account.username, "password": PASSWORD}})
    ).ok()["login"]
    reply = await post(http_url, LOGOUT, {"t": account.refresh_token}, token=account.access_token)
    assert reply.ok() == {"logout": True}
    assert (await _me_status(http_url, account.access_token)) == (401, ["UNAUTHENTICATED"])
    assert (await post(http_url, REFRESH, {"t": account.refresh_token})).codes == [
        "UNAUTHENTICATED"
    ]
    # The other device's session is untouched.
    assert (await _me_status(http_url, other["accessToken"])) == (200, [])


# -- forged and expired tokens --------------------------------------------------------------


async def _signing_ring(db: Database, settings: Settings) -> KeyRing:
    ring = KeyRing(db, Sealer.from_settings(settings), settings)
    await ring.load()
    return ring


async def test_forged_tokens_are_refused(http_url: str, db: Database, settings: Settings) -> None:
    account = await register(http_url)
    header_b64, payload_b64, _ = account.access_token.split(".")
    claims = _claims(account.access_token)
    kid = jwt.get_unverified_header(account.access_token)["kid"]

    none_token = (
        _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
        + "."
        + payload_b64
        + "."
    )
    async with httpx.AsyncClient(timeout=10) as client:
        jwks = (await client.get(f"{http_url}/.well-known/jwks.json")).json()
    public_jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    public_key = RSAAlgorithm.from_jwk(json.dumps(public_jwk))
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    hs_signature = hmac.new(public_pem, f"{hs_header}.{payload_b64}".encode(), hashlib.sha256)
    hs_token = f"{hs_header}.{payload_b64}.{_b64(hs_signature.digest())}"

    wrong_kid = jwt.encode(
        claims,
        _rsa_key(),
        algorithm="RS256",
        headers={"kid": "not-a-nova-key"},
    )
    other_key_same_kid = jwt.encode(claims, _rsa_key(), algorithm="RS256", headers={"kid": kid})
    tampered_claims = dict(claims, sub=str(uuid.uuid4()), roles=["admin"])
    tampered = f"{header_b64}.{_b64(json.dumps(tampered_claims).encode())}.{account.access_token.split('.')[2]}"  # noqa: E501

    ring = await _signing_ring(db, settings)
    assert ring._signing is not None
    assert ring._signing.private_key is not None
    now = int(time.time())
    expired = jwt.encode(
        dict(claims, iat=now - 3600, nbf=now - 3600, exp=now - 1800),
        ring._signing.private_key,
        algorithm="RS256",
        headers={"kid": ring._signing.kid},
    )
    for name, token in {
        "alg none": none_token,
        "HS256 with the public key": hs_token,
        "unknown kid": wrong_kid,
        "another key under our kid": other_key_same_kid,
        "tampered payload": tampered,
        "expired": expired,
        "garbage": "not.a.jwt",
    }.items():
        status, codes = await _me_status(http_url, token)
        assert (status, codes) == (401, ["UNAUTHENTICATED"]), name
    assert (await _me_status(http_url, account.access_token)) == (200, [])


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_key_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(
    http_url: str,
) -> None:
    account = await register(http_url)
    old_kid = jwt.get_unverified_header(account.access_token)["kid"]
    out = await nova("keys", "rotate")
    new_kid = out.strip().split()[-1]
    assert new_kid != old_kid

    # Replicas pick the new signing key up within `signing_key_refresh_s` (2 s here).
    async def signed_with_new_key() -> dict[str, str] | None:
        reply = await post(
            http_url, LOGIN, {"input": {"login": account.username, "password": PASSWORD}}
        )
        login: dict[str, str] = reply.ok()["login"]
        kid = jwt.get_unverified_header(login["accessToken"])["kid"]
        return login if kid == new_kid else None

    fresh = await wait_until(signed_with_new_key, timeout_s=8, interval_s=1.0)
    assert (await _me_status(http_url, account.access_token)) == (200, [])
    assert (await _me_status(http_url, fresh["accessToken"])) == (200, [])

    async def jwks_with_both() -> dict[str, list[dict[str, str]]] | None:
        async with httpx.AsyncClient(timeout=10) as client:
            document: dict[str, list[dict[str, str]]] = (
                await client.get(f"{http_url}/.well-known/jwks.json")
            ).json()
        kids = {key["kid"] for key in document["keys"]}
        return document if {old_kid, new_kid} <= kids else None

    # Every replica publishes both keys once it has reloaded (within 2 s here).
    jwks = await wait_until(jwks_with_both, timeout_s=8, interval_s=0.5)
    assert all(key["kty"] == "RSA" and "d" not in key for key in jwks["keys"])


async def test_grant_role_shows_in_the_next_token(http_url: str) -> None:
    account = await register(http_url)
    await nova("users", "grant", account.username, "moderator")
    fresh = (
        await post(http_url, LOGIN, {"input": {"login": account.email, "password": PASSWORD}})
    ).ok()["login"]
    assert set(cast(list[str], _claims(fresh["accessToken"])["roles"])) == {"user", "moderator"}


# -- mail: password reset and verification -----------------------------------------------

RESET_REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) }"
RESET = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }"
VERIFY = "mutation($t: String!) { verifyEmail(token: $t) }"


async def test_password_reset_through_smtp_revokes_sessions(http_url: str, stack: Stack) -> None:
    account = await register(http_url)
    unknown = await post(http_url, RESET_REQUEST, {"e": f"nobody_{account.email}"})
    assert unknown.ok() == {"requestPasswordReset": True}
    assert (await post(http_url, RESET_REQUEST, {"e": account.email})).ok() == {
        "requestPasswordReset": True
    }
    mail = await wait_for_mail(
        Path(stack.layout.mail_dir), to=account.email, subject_contains="Reset", timeout_s=30
    )
    token = extract_token(mail)

    weak = await post(http_url, RESET, {"t": token, "p": "short"})
    assert weak.codes == ["BAD_USER_INPUT"]
    new_password = "a brand new passphrase"
    assert (await post(http_url, RESET, {"t": token, "p": new_password})).ok() == {
        "resetPassword": True
    }
    assert (await _me_status(http_url, account.access_token)) == (401, ["UNAUTHENTICATED"])
    assert (await post(http_url, REFRESH, {"t": account.refresh_token})).codes == [
        "UNAUTHENTICATED"
    ]
    old = await post(http_url, LOGIN, {"input": {"login": account.username, "password": PASSWORD}})
    assert old.codes == ["UNAUTHENTICATED"]
    new = await post(
        http_url, LOGIN, {"input": {"login": account.username, "password": new_password}}
    )
    assert new.ok()["login"]["user"]["id"] == account.id
    again = await post(http_url, RESET, {"t": token, "p": "yet another passphrase"})
    assert again.codes == ["BAD_USER_INPUT"]


async def test_no_mail_is_sent_for_an_unknown_address(http_url: str, stack: Stack) -> None:
    address = f"{unique_name('ghost')}@example.com"
    assert (await post(http_url, RESET_REQUEST, {"e": address})).ok()
    with pytest.raises(AssertionError):
        await wait_for_mail(
            Path(stack.layout.mail_dir), to=address, subject_contains="Reset", timeout_s=3
        )


async def test_email_verification_through_smtp(http_url: str, stack: Stack) -> None:
    account = await register(http_url)
    mail = await wait_for_mail(
        Path(stack.layout.mail_dir), to=account.email, subject_contains="Verify", timeout_s=30
    )
    token = extract_token(mail)
    assert (await post(http_url, VERIFY, {"t": token})).ok() == {"verifyEmail": True}
    me = (await post(http_url, ME, token=account.access_token)).ok()["me"]
    assert me["emailVerified"] is True
    assert (await post(http_url, VERIFY, {"t": token})).codes == ["BAD_USER_INPUT"]
    assert (await post(http_url, VERIFY, {"t": "nott_bogus"})).codes == ["BAD_USER_INPUT"]


# -- profiles and blocks ---------------------------------------------------------------------

UPDATE = """
mutation($input: UpdateProfileInput!) {
  updateProfile(input: $input) { id displayName bio avatarUrl }
}
"""


async def test_update_profile_sets_keeps_and_clears_fields(http_url: str, db: Database) -> None:
    account = await register(http_url)
    token = account.access_token
    first = (
        await post(
            http_url,
            UPDATE,
            {
                "input": {
                    "displayName": "Ada",
                    "bio": "maths",
                    "avatarUrl": "https://a.example/x.png",
                }
            },
            token=token,
        )
    ).ok()["updateProfile"]
    assert (first["displayName"], first["bio"], first["avatarUrl"]) == (
        "Ada",
        "maths",
        "https://a.example/x.png",
    )
    second = (await post(http_url, UPDATE, {"input": {"bio": None}}, token=token)).ok()[
        "updateProfile"
    ]
    assert (second["displayName"], second["bio"]) == ("Ada", None)
    bad = await post(http_url, UPDATE, {"input": {"avatarUrl": "javascript:alert(1)"}}, token=token)
    assert bad.codes == ["BAD_USER_INPUT"]
    too_long = await post(http_url, UPDATE, {"input": {"displayName": "x" * 81}}, token=token)
    assert too_long.codes == ["BAD_USER_INPUT"]
    me = (await post(http_url, ME, token=token)).ok()["me"]
    assert (me["displayName"], me["avatarUrl"]) == ("Ada", "https://a.example/x.png")
    anonymous = await post(http_url, UPDATE, {"input": {"bio": "x"}})
    assert anonymous.codes == ["UNAUTHENTICATED"]
    events = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE type = 'user.profile.updated' AND aggregate_id = $1",
        account.id,
    )
    assert events == 2


BLOCK = "mutation($id: ID!) { blockUser(userId: $id) }"
UNBLOCK = "mutation($id: ID!) { unblockUser(userId: $id) }"
BLOCKED = """
query($first: Int, $after: String) {
  blockedUsers(first: $first, after: $after) {
    edges { cursor node { id username } } pageInfo { hasNextPage endCursor }
  }
}
"""


async def test_block_lists_pages_hides_and_unblock(http_url: str) -> None:
    me = await register(http_url, "blocker")
    others = [await register(http_url, "blocked") for _ in range(3)]
    for other in others:
        assert (await post(http_url, BLOCK, {"id": other.id}, token=me.access_token)).ok() == {
            "blockUser": True
        }
    # Idempotent.
    assert (await post(http_url, BLOCK, {"id": others[0].id}, token=me.access_token)).ok()
    page1 = (await post(http_url, BLOCKED, {"first": 2}, token=me.access_token)).ok()
    conn1 = page1["blockedUsers"]
    assert [e["node"]["id"] for e in conn1["edges"]] == [others[2].id, others[1].id]
    assert conn1["pageInfo"]["hasNextPage"] is True
    page2 = (
        await post(
            http_url,
            BLOCKED,
            {"first": 2, "after": conn1["pageInfo"]["endCursor"]},
            token=me.access_token,
        )
    ).ok()["blockedUsers"]
    assert [e["node"]["id"] for e in page2["edges"]] == [others[0].id]
    assert page2["pageInfo"]["hasNextPage"] is False

    # The blocked user no longer sees the blocker.
    lookup = "query($id: ID) { user(id: $id) { id } }"
    hidden = (await post(http_url, lookup, {"id": me.id}, token=others[0].access_token)).ok()
    assert hidden["user"] is None

    assert (await post(http_url, UNBLOCK, {"id": others[0].id}, token=me.access_token)).ok()
    seen = (await post(http_url, lookup, {"id": me.id}, token=others[0].access_token)).ok()
    assert seen["user"] == {"id": me.id}


async def test_block_errors(http_url: str) -> None:
    me = await register(http_url)
    assert (await post(http_url, BLOCK, {"id": me.id}, token=me.access_token)).codes == [
        "BAD_USER_INPUT"
    ]
    unknown = await post(http_url, BLOCK, {"id": str(uuid.uuid4())}, token=me.access_token)
    assert unknown.codes == ["NOT_FOUND"]
    assert (await post(http_url, BLOCK, {"id": me.id})).codes == ["UNAUTHENTICATED"]
    bad_page = await post(http_url, BLOCKED, {"first": 1000}, token=me.access_token)
    assert bad_page.codes == ["BAD_USER_INPUT"]
    bad_cursor = await post(http_url, BLOCKED, {"after": "???"}, token=me.access_token)
    assert bad_cursor.codes == ["BAD_USER_INPUT"]


# -- caches across replicas ----------------------------------------------------------------


async def test_profile_change_is_visible_on_both_replicas_within_50ms(http_url: str) -> None:
    owner = await register(http_url)
    viewer = await register(http_url)
    query = "query($id: ID) { user(id: $id) { displayName } }"
    replicas: set[str] = set()
    for _ in range(40):  # warm both replicas' local caches
        reply = await post(http_url, query, {"id": owner.id}, token=viewer.access_token)
        assert reply.ok()["user"]["displayName"] is None
        replicas.add(reply.headers["x-nova-replica"])
    assert len(replicas) == 2, replicas

    (
        await post(
            http_url, UPDATE, {"input": {"displayName": "Renamed"}}, token=owner.access_token
        )
    ).ok()
    await asyncio.sleep(0.05)
    seen: dict[str, set[str | None]] = {}
    for _ in range(30):
        reply = await post(http_url, query, {"id": owner.id}, token=viewer.access_token)
        seen.setdefault(reply.headers["x-nova-replica"], set()).add(
            reply.ok()["user"]["displayName"]
        )
    assert set(seen) == replicas
    assert all(values == {"Renamed"} for values in seen.values()), seen
