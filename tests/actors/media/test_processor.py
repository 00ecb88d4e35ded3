"""The media processor on the test stack: a job whose claimant died is taken again when its
lease runs out, a job past its attempts fails with the reason, and uploads never attached
are removed after a day, as a deleted post's are after the grace period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deployments.settings import Settings
from storage.db import Database
from storage.media_store import ORIGINAL, DirectoryStore, media_key
from storage.repositories.media import MediaRepository
from tests.conftest import wait_until
from tests.support.media import jpeg, sweep, uploaded_image
from tests.support.social import call, make_members

pytestmark = pytest.mark.stack

LEASE_S = 3


async def claimed_job(db: Database, settings: Settings, *, attempts: int, lease_s: float) -> str:
    """A queued picture whose last claim (`attempts` so far) holds a lease for `lease_s`
    more seconds: as a processor that died mid-job leaves it."""
    (owner,) = await make_members(db, settings, 1)
    body = jpeg(320, 240)
    media_id = uuid.uuid4()
    DirectoryStore(settings.media_store).write(media_key(media_id, ORIGINAL), body)
    repo = MediaRepository(db)
    await repo.create(
        media_id=media_id,
        owner_id=owner.uuid,
        kind="image",
        filename="left.jpg",
        declared_type="image/jpeg",
        declared_size=len(body),
        upload_expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    assert await repo.begin_upload(media_id)
    await repo.record_upload(media_id, len(body))
    async with db.connection() as conn:
        await conn.execute(
            """
            UPDATE media SET status = 'processing', content_type = 'image/jpeg',
                             attempts = $2, lease_until = now() + make_interval(secs => $3)
            WHERE id = $1
            """,
            media_id,
            attempts,
            lease_s,
        )
    return str(media_id)


async def finished(db: Database, media_id: str) -> Any:
    row = await db.fetchrow(
        "SELECT status, attempts, error, processed_at, variants FROM media WHERE id = $1",
        uuid.UUID(media_id),
    )
    return row if row["status"] in ("ready", "failed") else None


async def test_a_job_left_by_a_dead_claimant_is_taken_again_when_its_lease_ends(
    db: Database, deployed: Settings
) -> None:
    started = datetime.now(UTC)
    media_id = await claimed_job(db, deployed, attempts=1, lease_s=LEASE_S)
    row = await wait_until(lambda: finished(db, media_id), timeout_s=60, message="processed")
    assert row["status"] == "ready"
    assert row["attempts"] == 2  # the dead claim, then the one that worked
    assert row["processed_at"] >= started + timedelta(seconds=LEASE_S)
    assert {v["name"] for v in row["variants"]} == {"thumb", "small", "large"}


async def test_a_job_past_its_attempts_fails_with_the_reason(
    db: Database, deployed: Settings
) -> None:
    media_id = await claimed_job(db, deployed, attempts=deployed.media_max_attempts, lease_s=0)
    row = await wait_until(lambda: finished(db, media_id), timeout_s=60, message="given up")
    assert row["status"] == "failed"
    assert f"after {deployed.media_max_attempts} attempts" in row["error"]
    event = await db.fetchrow(
        "SELECT payload FROM outbox WHERE type = 'media.failed' AND aggregate_id = $1",
        media_id,
    )
    assert event is not None


async def test_uploads_never_attached_are_removed_after_a_day(
    db: Database, deployed: Settings
) -> None:
    old_unused = await claimed_job(db, deployed, attempts=0, lease_s=0)
    old_used = await claimed_job(db, deployed, attempts=0, lease_s=0)
    recent_unused = await claimed_job(db, deployed, attempts=0, lease_s=0)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE media SET created_at = now() - interval '2 days' WHERE id = ANY($1)",
            [uuid.UUID(old_unused), uuid.UUID(old_used)],
        )
        await conn.execute(
            "UPDATE media SET attached_at = now() WHERE id = $1", uuid.UUID(old_used)
        )
    await sweep(db, deployed)
    kept = {
        str(row["id"])
        for row in await db.fetch(
            "SELECT id FROM media WHERE id = ANY($1)",
            [uuid.UUID(m) for m in (old_unused, old_used, recent_unused)],
        )
    }
    assert kept == {old_used, recent_unused}
    store = DirectoryStore(deployed.media_store)
    assert await store.size(media_key(uuid.UUID(old_unused), ORIGINAL)) is None
    assert await store.size(media_key(uuid.UUID(old_used), ORIGINAL)) is not None


async def test_a_deleted_posts_media_is_removed_after_the_grace_period(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (author,) = await make_members(db, deployed, 1)
    kept_id = await uploaded_image(http_url, author)
    gone_id = await uploaded_image(http_url, author)
    create = 'mutation($media: [ID!]) { createPost(input: {text: "x", mediaIds: $media}) { id } }'
    kept = (await call(http_url, author, create, media=[kept_id])).ok()["createPost"]["id"]
    gone = (await call(http_url, author, create, media=[gone_id])).ok()["createPost"]["id"]
    delete = "mutation($id: ID!) { deletePost(id: $id) }"
    for post in (kept, gone):
        assert (await call(http_url, author, delete, id=post)).ok()
    grace = timedelta(seconds=deployed.media_delete_after_s + 60)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE posts SET deleted_at = now() - $2::interval WHERE id = $1",
            uuid.UUID(gone),
            grace,
        )
    await sweep(db, deployed)
    left = {
        str(r["id"])
        for r in await db.fetch(
            "SELECT id FROM media WHERE id = ANY($1)", [uuid.UUID(kept_id), uuid.UUID(gone_id)]
        )
    }
    assert left == {kept_id}  # deleted a moment ago: kept for the grace period
    store = DirectoryStore(deployed.media_store)
    assert await store.size(media_key(uuid.UUID(gone_id), "large.webp")) is None
    assert await store.size(media_key(uuid.UUID(kept_id), "large.webp")) is not None
