"""The media processor: takes queued media from PostgreSQL and has Ray tasks process them.

PostgreSQL is the queue (`storage.repositories.media`): a claim is a lease, so a
processor that dies mid-job loses nothing (the lease runs out and a claim takes the job
again), and a whole stack restarted resumes what was unfinished. Each claim counts an
attempt; past `media_max_attempts` the media FAILS. A result is recorded with its event
(`media.ready` or `media.failed`) in one transaction, and only by the current claim.
Then `mediaUpdated` hears of it on Redis. `completeUpload` publishes on `JOBS_CHANNEL`, so
a new job starts at once; otherwise the processor looks every `POLL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import ray
import redis.asyncio as aioredis

from actors.media.tasks import StoreSpec, image_task, video_task
from actors.settings import ActorSettings
from storage.db import Database
from storage.errors import classify
from storage.events import Event
from storage.repositories.media import MediaRecord, MediaRepository, Processed
from storage.repositories.stories import StoryRepository

log = logging.getLogger(__name__)

JOBS_CHANNEL = "nova:media:jobs"
UPDATED_CHANNEL = "nova:media:{}"
POLL_S = 1.0
# Uploads never attached to a post are removed after a day, looked for this often.
UNATTACHED_TTL_S = 86_400.0
SWEEP_S = 600.0
SWEEP_BATCH = 500
# Reads never show an ended story; its rows and files go this long after it ended.
ENDED_STORY_GRACE_S = 3600.0


class MediaProcessor:
    def __init__(self, db: Database, redis: aioredis.Redis, settings: ActorSettings) -> None:
        self._repo = MediaRepository(db)
        self._stories = StoryRepository(db)
        self._spec = StoreSpec(
            settings.media_store, settings.media_s3_access_key, settings.media_s3_secret_key
        )
        self._store = self._spec.open()
        self._redis = redis
        self._settings = settings
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.processed = 0
        self.failed = 0
        self.retried = 0
        self.swept = 0

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            while True:
                free = self._settings.media_concurrency - len(self._running)
                if free > 0:
                    for job in await self._repo.claim(free, self._settings.media_lease_s):
                        task = asyncio.create_task(self._process(job))
                        self._running.add(task)
                        task.add_done_callback(self._done)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
        finally:
            listener.cancel()
            sweeper.cancel()
            for task in self._running:
                task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    async def sweep(self, older_than_s: float = UNATTACHED_TTL_S) -> int:
        """Remove uploads never attached to anything within `older_than_s`, the media of
        posts and messages deleted more than `NOVA_MEDIA_DELETE_AFTER_S` ago, and stories
        (with their media) an hour after they ended: rows, then files. Returns how many
        media went."""
        store = self._store
        removed = 0
        for media_id in await self._repo.unattached(older_than_s, SWEEP_BATCH):
            if await self._repo.forget(media_id):  # the row first: a post may take it still
                await store.delete_media(media_id)
                removed += 1
        grace = self._settings.media_delete_after_s
        deleted = await self._repo.of_deleted_posts(grace, SWEEP_BATCH)
        deleted += await self._repo.of_deleted_messages(grace, SWEEP_BATCH)
        for media_id in deleted:
            await self._repo.delete(media_id)
            await store.delete_media(media_id)
            removed += 1
        for story_id, media_id in await self._stories.ended(ENDED_STORY_GRACE_S, SWEEP_BATCH):
            await self._stories.forget(story_id)
            await self._repo.delete(media_id)
            await store.delete_media(media_id)
            removed += 1
        self.swept += removed
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("unattached media not swept: %s", classify(exc))

    async def _listen(self) -> None:
        """Wake the loop when an upload is completed (best effort: it polls anyway)."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(JOBS_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._wake.set()
            except Exception as exc:
                log.warning("media job wake-ups lost for now: %s", classify(exc, "redis"))
                await asyncio.sleep(POLL_S)

    def _submit(self, job: MediaRecord) -> tuple[ray.ObjectRef[dict[str, Any]], float]:
        """The Ray task for the job, and how long it may take."""
        settings = self._settings
        if job.kind == "video":
            ref = video_task.remote(
                self._spec,
                str(job.id),
                settings.media_max_video_duration_s,
                settings.media_transcode_threads,
                settings.media_transcode_timeout_s,
            )
            # Its own bound, and the time it may wait in Ray for a free transcode slot.
            return ref, 2 * settings.media_transcode_timeout_s
        ref = image_task.remote(self._spec, str(job.id), settings.media_max_image_pixels)
        return ref, settings.media_lease_s

    async def _outcome(
        self, job: MediaRecord, ref: ray.ObjectRef[dict[str, Any]], timeout_s: float
    ) -> dict[str, Any]:
        """The task's result, renewing the job's lease while it runs, so that a long
        transcode is not taken for a lost one; `TimeoutError` past `timeout_s`."""
        lease_s = self._settings.media_lease_s
        waiting = asyncio.ensure_future(ref)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    done, _ = await asyncio.wait({waiting}, timeout=lease_s / 3)
                    if done:
                        return waiting.result()
                    if not await self._repo.extend(job.id, job.attempts, lease_s):
                        raise TimeoutError("the job's claim was taken over")
        finally:
            waiting.cancel()

    async def _process(self, job: MediaRecord) -> None:
        if job.attempts > self._settings.media_max_attempts:
            await self._finish(job, error=f"gave up after {job.attempts - 1} attempts")
            return
        try:
            ref, timeout_s = self._submit(job)
            result = await self._outcome(job, ref, timeout_s)
        except TimeoutError:
            ray.cancel(ref, force=True)
            log.warning("media %s: processing outlasted its lease; it will be retried", job.id)
            self.retried += 1
            await self._repo.release(job.id, job.attempts)
            return
        except Exception as exc:  # the task's worker or node died past its Ray retries
            log.warning("media %s: processing failed, will retry: %s", job.id, exc)
            self.retried += 1
            await self._repo.release(job.id, job.attempts)
            return
        if "error" in result:
            await self._finish(job, error=str(result["error"]))
            return
        await self._finish(
            job,
            processed=Processed(
                width=result["width"],
                height=result["height"],
                blurhash=result["blurhash"],
                variants=result["variants"],
                duration_ms=result.get("duration_ms"),
            ),
        )

    async def _finish(
        self, job: MediaRecord, *, processed: Processed | None = None, error: str | None = None
    ) -> None:
        ready = processed is not None
        event = Event(
            type="media.ready" if ready else "media.failed",
            aggregate_id=str(job.id),
            payload={
                "media_id": str(job.id),
                "owner_id": str(job.owner_id),
                "kind": job.kind,
                **({} if ready else {"error": error}),
            },
        )
        recorded = await self._repo.finish(
            job.id, job.attempts, event=event, processed=processed, error=error
        )
        if not recorded:
            return  # another claim took it over meanwhile; its result stands
        if ready:
            self.processed += 1
        else:
            self.failed += 1
        try:
            await self._redis.publish(
                UPDATED_CHANNEL.format(job.id), "ready" if ready else "failed"
            )
        except Exception as exc:  # subscribers read the row on their next look
            log.warning("media %s: update not published: %s", job.id, classify(exc, "redis"))

    def status(self) -> dict[str, int]:
        return {
            "running": len(self._running),
            "processed": self.processed,
            "failed": self.failed,
            "retried": self.retried,
            "swept": self.swept,
        }
