"""Data exports end to end, as a client sees them: `exportMyData`, `dataExport` until READY,
the archive behind the signed link (exactly the member's data, their picture, no one else's
messages), the mail with the link, and the sweep that expires it."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import httpx
import pytest

from actors.exports.worker import ExportWorker
from deployments.settings import Settings
from deployments.stack import Stack
from storage.db import Database
from storage.export_links import ARCHIVE, ExportLinks
from storage.media_store import media_key, open_store
from tests.conftest import wait_until
from tests.support.chat import room_of
from tests.support.mailbox import wait_for_mail
from tests.support.media import uploaded_image
from tests.support.social import LIKE, Member, call, create_post, make_members

pytestmark = pytest.mark.stack

FIELDS = "id status progress createdAt readyAt expiresAt url error sizeBytes"
EXPORT = f"mutation {{ exportMyData {{ {FIELDS} }} }}"
DATA_EXPORT = f"query($id: ID) {{ dataExport(id: $id) {{ {FIELDS} }} }}"
COMMENT = "mutation($id: ID!, $text: String!) { createComment(postId: $id, text: $text) { id } }"
FOLLOW = "mutation($id: ID!) { follow(userId: $id) }"
SEND = """
mutation($room: ID!, $text: String!, $media: [ID!]) {
  sendMessage(input: {roomId: $room, text: $text, clientMessageId: $text, mediaIds: $media}) {
    id
  }
}
"""
NOTIFICATIONS = "query { notifications(first: 10) { edges { node { id } } } }"


async def _export(http_url: str, member: Member, export_id: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = (await call(http_url, member, DATA_EXPORT, id=export_id)).ok()[
        "dataExport"
    ]
    return answer


async def _ready(http_url: str, member: Member, export_id: str) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        found = await _export(http_url, member, export_id)
        assert found["status"] in ("QUEUED", "RUNNING", "READY"), found
        return found if found["status"] == "READY" else None

    done: dict[str, Any] = await wait_until(ready, timeout_s=120, message="the export READY")
    return done


def _json(archive: zipfile.ZipFile, name: str) -> Any:
    return json.loads(archive.read(name))


async def test_an_export_holds_exactly_the_members_data(
    http_url: str, db: Database, deployed: Settings, stack: Stack
) -> None:
    ada, bob = await make_members(db, deployed, 2, prefix="ex")
    mine = await create_post(http_url, ada, "ada writes")
    theirs = await create_post(http_url, bob, "bob writes")
    (await call(http_url, ada, COMMENT, id=theirs["id"], text="ada comments")).ok()
    (await call(http_url, ada, LIKE, id=theirs["id"])).ok()
    (await call(http_url, ada, FOLLOW, id=bob.id)).ok()
    (await call(http_url, bob, FOLLOW, id=ada.id)).ok()
    room = await room_of(http_url, ada, bob)
    picture = await uploaded_image(http_url, ada, 64, 48)
    (await call(http_url, ada, SEND, room=room, text="ada says hi", media=[picture])).ok()
    (await call(http_url, bob, SEND, room=room, text="bob's secret", media=[])).ok()

    async def notified() -> bool:
        edges = (await call(http_url, ada, NOTIFICATIONS)).ok()["notifications"]["edges"]
        return bool(edges)

    await wait_until(notified, timeout_s=60, message="ada's follow notification")

    started = (await call(http_url, ada, EXPORT)).ok()["exportMyData"]
    again = (await call(http_url, ada, EXPORT)).ok()["exportMyData"]
    assert again["id"] == started["id"]  # one at a time: asking again answers the same
    assert started["url"] is None or started["status"] == "READY"
    assert (await call(http_url, bob, DATA_EXPORT, id=started["id"])).codes == ["NOT_FOUND"]
    assert (await _export(http_url, bob, None)) is None

    done = await _ready(http_url, ada, started["id"])
    assert done["progress"] == 1
    assert done["error"] is None
    assert (await _export(http_url, ada, None))["id"] == started["id"]
    assert (await call(http_url, ada, EXPORT)).ok()["exportMyData"]["id"] == started["id"]
    url = done["url"]
    assert url.startswith(f"{deployed.public_url}/exports/{started['id']}/")

    async with httpx.AsyncClient(timeout=30) as client:
        got = await client.get(url)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert got.headers["content-disposition"].startswith("attachment")
    assert got.headers["cache-control"] == "private, no-store"
    assert len(got.content) == done["sizeBytes"]
    archive = zipfile.ZipFile(io.BytesIO(got.content))
    names = set(archive.namelist())
    for name in ("README.txt", "profile.json", "posts.json", "comments.json", "likes.json"):
        assert name in names
    assert _json(archive, "profile.json")["id"] == ada.id
    assert [p["id"] for p in _json(archive, "posts.json")] == [mine["id"]]
    assert [c["text"] for c in _json(archive, "comments.json")] == ["ada comments"]
    assert [like["post_id"] for like in _json(archive, "likes.json")] == [theirs["id"]]
    follows = _json(archive, "follows.json")
    assert [f["user_id"] for f in follows["following"]] == [bob.id]
    assert [f["user_id"] for f in follows["followers"]] == [bob.id]
    messages = _json(archive, "messages.json")
    assert [(m["text"], m["room_id"], m["media_ids"]) for m in messages] == [
        ("ada says hi", room, [picture])
    ]
    assert _json(archive, "notifications.json")
    sessions = _json(archive, "sessions.json")
    assert sessions
    assert all("token" not in key for s in sessions for key in s)
    [media] = _json(archive, "media.json")
    assert media["id"] == picture
    assert media["files"]
    assert set(media["files"]) <= names
    everything = b"".join(archive.read(n) for n in names if n.endswith(".json"))
    assert b"bob's secret" not in everything
    assert b"bob writes" not in everything
    assert b"password" not in everything

    mail = await wait_for_mail(
        stack.layout.mail_dir,
        to=f"{ada.username}@example.com",
        subject_contains="Your Nova data is ready",
        timeout_s=60,
    )
    assert url in mail.get_content()


async def test_a_tampered_or_expired_link_is_forbidden_and_the_sweep_expires_it(
    http_url: str, db: Database, deployed: Settings
) -> None:
    [ada] = await make_members(db, deployed, 1, prefix="ex")
    started = (await call(http_url, ada, EXPORT)).ok()["exportMyData"]
    done = await _ready(http_url, ada, started["id"])
    url: str = done["url"]
    export_id = uuid.UUID(started["id"])
    signature = url.split("/")[-3]
    tampered = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    past = int(time.time()) - 60
    expired = ExportLinks(deployed.secret_key).url(deployed.public_url, export_id, past)
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(tampered)).status_code == 403
        assert (await client.get(expired)).status_code == 403
        assert (await client.get(url)).status_code == 200

    async with db.connection() as conn:
        await conn.execute(
            "UPDATE data_exports SET expires_at = now() - interval '1 second' WHERE id = $1",
            export_id,
        )
    seen = await _export(http_url, ada, started["id"])  # expired to the second, unswept
    assert seen["status"] == "EXPIRED"
    assert seen["url"] is None
    assert await ExportWorker(db, deployed).sweep() >= 1
    gone = await _export(http_url, ada, started["id"])
    assert gone["status"] == "EXPIRED"
    assert gone["url"] is None
    store = open_store(
        deployed.media_store,
        access_key=deployed.media_s3_access_key,
        secret_key=deployed.media_s3_secret_key,
    )
    assert await store.size(media_key(export_id, ARCHIVE)) is None
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(url)).status_code == 404
