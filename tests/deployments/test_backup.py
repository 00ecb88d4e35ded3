"""Backups that restore: `nova backup create` on the test stack, `nova backup restore` into a
second, fresh stack of the test's own (its own state dir and ports), which then serves the
same posts, follows, messages, counts, feed, search results and picture; earlier access
tokens are refused there and refresh tokens work. Also: the archive refuses a damaged or
foreign member, and a bucket's media go into a backup and back out of it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import stat
import string
import sys
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from deployments.backup.archive import ArchiveReader, ArchiveWriter, BackupError, safe_name
from deployments.backup.create import add_media
from deployments.backup.restore import restore_media
from deployments.settings import Settings
from deployments.stack import layout_for_tests, port_open
from storage.media_store import open_store
from storage.migrate import load_migrations
from storage.store_listing import stored_keys
from tests.conftest import nova, wait_until
from tests.support.chat import room_of, send
from tests.support.graphql import LOGIN, PASSWORD, Account, post, register
from tests.support.media import uploaded_image
from tests.support.s3 import S3Server, unique_bucket
from tests.support.social import FEED_IDS, FOLLOW, LIKE, Member, call

REPO = Path(__file__).resolve().parents[2]
# The second stack's ports. A stack uses its base + 1 to + 4999 (Ray's workers from + 4000):
# 20001-24999 for the dev stack, 21001-25999 for the test stack, so 26001-30999 here, with
# its HTTP, dashboard and gRPC ports among them.
FRESH_PORTS = {
    "NOVA_PORT_BASE": "26000",
    "NOVA_HTTP_PORT": "26800",
    "NOVA_DASHBOARD_PORT": "26265",
    "NOVA_GRPC_PORT": "26900",
}
FRESH_URL = "http://127.0.0.1:26800"
STACK_TIMEOUT_S = 900


def test_a_damaged_or_foreign_member_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(b"model bytes")
    archive = tmp_path / "backup.tar"
    writer = ArchiveWriter(archive)
    writer.add_file(source, "models/home/v1.npz")
    writer.finish({"migration": None})
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    reader = ArchiveReader(archive)
    assert reader.verify() == len(b"model bytes")
    reader.close()

    data = bytearray(archive.read_bytes())
    data[data.index(b"model bytes")] ^= 1
    archive.write_bytes(bytes(data))
    damaged = ArchiveReader(archive)
    with pytest.raises(BackupError, match="checksum"):
        damaged.verify()
    damaged.close()
    for name in ("../etc/passwd", "/etc/passwd", "media/../x"):
        with pytest.raises(BackupError):
            safe_name(name)


def test_a_buckets_media_go_into_a_backup_and_back_out(s3_server: S3Server, tmp_path: Path) -> None:
    def settings_of(bucket: str) -> Settings:
        return Settings.from_env(
            {
                "NOVA_MEDIA_STORE": s3_server.location(bucket, "nova"),
                "NOVA_MEDIA_S3_ACCESS_KEY": s3_server.access_key,
                "NOVA_MEDIA_S3_SECRET_KEY": s3_server.secret_key,
            }
        )

    source, target = settings_of(unique_bucket("from")), settings_of(unique_bucket("to"))
    store = open_store(
        source.media_store,
        access_key=source.media_s3_access_key,
        secret_key=source.media_s3_secret_key,
    )
    store.ensure_bucket()
    files = {
        "0d6f1c2e-0000-4000-8000-000000000001/large.webp": b"a picture",
        "0d6f1c2e-0000-4000-8000-000000000002/hls.m3u8": b"#EXTM3U",
    }
    for key, data in files.items():
        store.write(key, data)
    s3_server.client().put_object(  # beside the store's prefix: not the store's
        Bucket=source.media_store.split("/")[2], Key="other/thing", Body=b"x"
    )
    assert sorted(stored_keys(source.media_store, access_key=s3_server.access_key,
                              secret_key=s3_server.secret_key)) == sorted(files)  # fmt: skip

    archive = tmp_path / "media.tar"
    writer = ArchiveWriter(archive)
    add_media(writer, source, tmp_path / "scratch")
    writer.finish({"migration": None})
    reader = ArchiveReader(archive)
    reader.verify()
    assert restore_media(reader, target) == len(files)
    reader.close()
    restored = open_store(
        target.media_store,
        access_key=target.media_s3_access_key,
        secret_key=target.media_s3_secret_key,
    )
    assert {key: restored.read(key) for key in files} == files


# -- a backup of the test stack, restored into a fresh stack -----------------------------

POST = """
query($id: ID!) {
  post(id: $id) {
    id text likeCount commentCount shareCount viewerHasLiked author { id username }
    comments(first: 10) { edges { node { text author { id } } } }
    media { id status width height url }
  }
}
"""
PEOPLE = """
query($id: ID!) {
  user(id: $id) { username followerCount followingCount }
  followers(userId: $id) { edges { node { id } } }
  following(userId: $id) { edges { node { id } } }
}
"""
SEARCH = """
query($words: String!, $name: String!) {
  searchPosts(query: $words) { edges { node { id } } }
  searchUsers(query: $name) { id }
}
"""
MESSAGES = """
query($room: ID!) {
  messages(roomId: $room, last: 10) { edges { node { seq text sender { id } } } }
}
"""
CREATE_POST = """
mutation($text: String!, $media: [ID!]) {
  createPost(input: {text: $text, mediaIds: $media}) { id }
}
"""
COMMENT = "mutation($id: ID!, $text: String!) { createComment(postId: $id, text: $text) { id } }"
REFRESH = "mutation($token: String!) { refreshToken(refreshToken: $token) { accessToken } }"
ME = "query { me { id } }"


def member(account: Account) -> Member:
    return Member(account.id, account.username, account.access_token)


def a_word() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=14))


async def what_is_served(
    url: str, people: dict[str, Member], posts: list[str], room: str, word: str
) -> dict[str, Any]:
    """Everything the comparison covers, as the stack at `url` answers it."""
    ada, bob = people["ada"], people["bob"]
    seen: dict[str, Any] = {}
    for post_id in posts:
        shown = (await call(url, bob, POST, id=post_id)).ok()["post"]
        for media in shown["media"]:
            path = urlsplit(media.pop("url")).path
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await client.get(url + path)
            digest = hashlib.sha256(answer.content).hexdigest()
            media["picture"] = (answer.status_code, answer.headers.get("content-type"), digest)
        seen[post_id] = shown
    for name, person in people.items():
        seen[name] = (await call(url, bob, PEOPLE, id=person.id)).ok()
    seen["feed"] = (await call(url, bob, FEED_IDS)).ok()
    seen["search"] = (await call(url, bob, SEARCH, words=word, name=ada.username)).ok()
    seen["messages"] = (await call(url, ada, MESSAGES, room=room)).ok()
    return seen


def fresh_environment(state_dir: Path) -> dict[str, str]:
    """The second stack's: nothing of the test stack's URLs, secrets or Ray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOVA_", "RAY_"))}
    return {**env, **FRESH_PORTS, "NOVA_STATE_DIR": str(state_dir)}


async def nova_in(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deployments.cli",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), STACK_TIMEOUT_S)
    return process.returncode or 0, out.decode(), err.decode()


def inspect(backup: Path) -> tuple[int, int, dict[str, Any]]:
    """The archive's mode and size, and its manifest."""
    with tarfile.open(backup) as archive:
        handle = archive.extractfile("manifest.json")
        assert handle is not None
        manifest: dict[str, Any] = json.load(handle)
    return stat.S_IMODE(backup.stat().st_mode), backup.stat().st_size, manifest


async def sign_in(url: str, account: Account) -> tuple[Member, dict[str, Any]]:
    reply = await post(url, LOGIN, {"input": {"login": account.username, "password": PASSWORD}})
    payload = reply.ok()["login"]
    return Member(account.id, account.username, payload["accessToken"]), payload


@pytest.mark.stack
@pytest.mark.timeout(1800)  # two stacks on two cores: minutes, measured and reported
async def test_a_backup_restored_into_a_fresh_stack_serves_the_same(
    http_url: str, deployed: Settings, tmp_path: Path
) -> None:
    accounts = {name: await register(http_url, "bk") for name in ("ada", "bob", "cyd")}
    people = {name: member(account) for name, account in accounts.items()}
    ada, bob, cyd = people["ada"], people["bob"], people["cyd"]
    for follower, followee in ((bob, ada), (bob, cyd), (cyd, ada)):
        assert (await call(http_url, follower, FOLLOW, id=followee.id)).ok()
    word = a_word()
    picture = await uploaded_image(http_url, ada, 64, 48)
    pictured = await call(http_url, ada, CREATE_POST, text=f"{word} pictured", media=[picture])
    posts = [
        pictured.ok()["createPost"]["id"],
        (await call(http_url, cyd, CREATE_POST, text=f"{word} from cyd")).ok()["createPost"]["id"],
        (await call(http_url, ada, CREATE_POST, text="plain words")).ok()["createPost"]["id"],
    ]
    for liker, liked in ((bob, posts[0]), (cyd, posts[0]), (bob, posts[1])):
        assert (await call(http_url, liker, LIKE, id=liked)).ok()
    assert (await call(http_url, bob, COMMENT, id=posts[0], text="nice one")).ok()
    room = await room_of(http_url, ada, bob)
    for sender, text in ((ada, "one"), (bob, "two")):
        (await send(http_url, sender, room, text)).ok()

    async def fanned_out() -> bool:
        feed = (await call(http_url, bob, FEED_IDS)).ok()["feed"]["edges"]
        return set(posts) <= {edge["node"]["id"] for edge in feed}

    await wait_until(fanned_out, timeout_s=60, message="the posts in bob's feed")
    original = await what_is_served(http_url, people, posts, room, word)
    assert original[posts[0]]["likeCount"] == 2
    assert original[posts[0]]["media"][0]["picture"][0] == 200
    assert len(original["search"]["searchPosts"]["edges"]) == 2

    started = time.monotonic()
    made = await nova("backup", "create", "--output", str(tmp_path), timeout_s=600)
    backup = Path(next(line for line in made.splitlines() if line.endswith(".tar")))
    seconds = {"create": time.monotonic() - started}
    mode, size, manifest = inspect(backup)
    assert mode == 0o600
    assert manifest["migration"]["version"] == load_migrations()[-1].version
    assert any(name.startswith(f"media/{picture}/") for name in manifest["files"])

    # Beside the test stack's state dir, where PostgreSQL's own user passes through the
    # parents; a short name, as HAProxy's socket path under it has at most 97 characters.
    state_dir = layout_for_tests().state_dir.parent / "nova-rt"
    env = fresh_environment(state_dir)
    await nova_in(env, "stop")  # whatever an interrupted run left
    shutil.rmtree(state_dir, ignore_errors=True)
    try:
        assert not port_open(26_800), "the fresh stack's HTTP port is taken"
        assert not port_open(26_432), "the fresh stack's PostgreSQL port is taken"
        started = time.monotonic()
        code, out, err = await nova_in(env, "up", "--no-web")
        seconds["up"] = time.monotonic() - started
        assert code == 0, err or out
        started = time.monotonic()
        code, out, err = await nova_in(env, "backup", "restore", str(backup))
        seconds["restore"] = time.monotonic() - started
        assert code == 0, err or out
        print(out)
        assert "Nova deployed again" in out, out

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    return (await client.get(f"{FRESH_URL}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, timeout_s=300, interval_s=1, message="the restored stack ready")
        refused = await call(FRESH_URL, bob, ME)
        assert refused.codes == ["UNAUTHENTICATED"], refused.body
        refreshed = await post(FRESH_URL, REFRESH, {"token": accounts["bob"].refresh_token})
        assert refreshed.ok()["refreshToken"]["accessToken"]
        signed_in = {name: (await sign_in(FRESH_URL, a))[0] for name, a in accounts.items()}
        restored = await what_is_served(FRESH_URL, signed_in, posts, room, word)
        seconds["compare"] = time.monotonic() - started - seconds["restore"]
        assert restored == original

        code, out, err = await nova_in(env, "backup", "restore", str(backup))
        assert code == 1
        assert "already holds" in err, err
        assert "--force" in err, err
    finally:
        code, out, err = await nova_in(env, "stop")
        shutil.rmtree(state_dir, ignore_errors=True)
        print(f"backup and restore, seconds: {seconds}; archive {size} bytes")
    assert code == 0, err or out
