"""The data export worker: takes queued exports from PostgreSQL and has a Ray task make
each archive; expires archives past their lifetime.

As with media (`actors.media.processor`), PostgreSQL is the queue and a claim is a lease:
a worker that dies mid-export loses nothing (the lease runs out and a claim takes the job
again), and a stack restarted resumes what was unfinished. Each claim counts an attempt;
past `MAX_ATTEMPTS` the export FAILS. READY is recorded with `privacy.export.ready` in one
transaction; the mail consumer mails the link. Archives are kept `KEEP_S` (7 days), then
the sweep deletes them from the media store and the export is EXPIRED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import ray

from actors.exports.tasks import export_task
from actors.media.tasks import StoreSpec
from actors.settings import ActorSettings
from storage.db import Database
from storage.errors import classify
from storage.events import Event
from storage.repositories.exports import ExportRecord, ExportRepository

log = logging.getLogger(__name__)

READY_EVENT = "privacy.export.ready"
KEEP_S = 7 * 86_400.0
POLL_S = 1.0
# A claim lasts this long; the task renews it at every kind it completes.
LEASE_S = 300.0
# Bound on one export's task, and the time it may wait in Ray for a free CPU.
TIMEOUT_S = 3600.0
MAX_ATTEMPTS = 3
CONCURRENCY = 1
SWEEP_S = 600.0
SWEEP_BATCH = 500


class ExportWorker:
    def __init__(self, db: Database, settings: ActorSettings) -> None:
        self._repo = ExportRepository(db)
        self._settings = settings
        self._spec = StoreSpec(
            settings.media_store, settings.media_s3_access_key, settings.media_s3_secret_key
        )
        self._store = self._spec.open()
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.ready = 0
        self.failed = 0
        self.retried = 0
        self.expired = 0

    async def run(self) -> None:
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            while True:
                free = CONCURRENCY - len(self._running)
                if free > 0:
                    for job in await self._repo.claim(free, LEASE_S):
                        task = asyncio.create_task(self._process(job))
                        self._running.add(task)
                        task.add_done_callback(self._done)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
        finally:
            sweeper.cancel()
            for task in self._running:
                task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _process(self, job: ExportRecord) -> None:
        if job.attempts > MAX_ATTEMPTS:
            await self._repo.fail(job.id, job.attempts, f"gave up after {MAX_ATTEMPTS} attempts")
            self.failed += 1
            return
        ref = export_task.remote(
            self._settings, self._spec, str(job.id), str(job.user_id), job.attempts, LEASE_S
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                result: dict[str, Any] = await ref
        except Exception as exc:  # timed out, or the task failed past its Ray retries
            ray.cancel(ref, force=True)
            log.warning("export %s: not made, will retry: %s", job.id, exc)
            self.retried += 1
            await self._repo.release(job.id, job.attempts)
            return
        if result.get("lost"):
            return  # another claim took it over; its result stands
        await self._finish(job, int(result["size_bytes"]))

    async def _finish(self, job: ExportRecord, size_bytes: int) -> None:
        expires_at = datetime.now(UTC) + timedelta(seconds=KEEP_S)
        event = Event(
            type=READY_EVENT,
            aggregate_id=str(job.user_id),
            # What the mail's signed link is made of (`storage.export_links`).
            payload={
                "export_id": str(job.id),
                "user_id": str(job.user_id),
                "expires": int(expires_at.timestamp()),
            },
        )
        done = await self._repo.finish(job.id, job.attempts, size_bytes, expires_at, event)
        if done is not None:
            self.ready += 1

    async def sweep(self) -> int:
        """Delete the archives of exports past their lifetime and mark them EXPIRED;
        returns how many. The archive goes first: an export never says EXPIRED while its
        file is still stored."""
        expired = 0
        for export_id in await self._repo.due_to_expire(SWEEP_BATCH):
            await self._store.delete_media(export_id)
            await self._repo.expire(export_id)
            expired += 1
        self.expired += expired
        return expired

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("expired data exports not swept: %s", classify(exc))
            await asyncio.sleep(SWEEP_S)

    def status(self) -> dict[str, int]:
        return {
            "running": len(self._running),
            "ready": self.ready,
            "failed": self.failed,
            "retried": self.retried,
            "expired": self.expired,
        }
