"""Ray actors for Nova's jobs about people: the data export and erasure worker
(`nova-data-export`: `actors.exports.worker` and `actors.erasure`) and the notification
digest (`nova-notification-digest`: `actors.notification_digest`).

Like the workers in `deployments.workers`, they are detached, named actors in the `nova`
namespace, restarted by Ray when their process dies, with their loops under `supervise`.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.erasure import ErasureJob
from actors.exports.worker import ExportWorker
from actors.notification_digest import DigestJob
from deployments.settings import Settings
from deployments.workers import NAMESPACE
from storage.db import Database
from storage.redis_client import make_redis
from storage.tasks import LoopHealth, supervise

DATA_EXPORT = "nova-data-export"


@ray.remote(num_cpus=0, max_restarts=-1)  # type: ignore[call-overload]
class DataExportActor:
    """People's data: `actors.exports.worker.ExportWorker` (each archive is made by a Ray
    task of its own, one CPU, so this actor only waits on them and sweeps) and
    `actors.erasure.ErasureJob` (deleted accounts erased, then scrubbed), in one detached
    actor."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._worker: ExportWorker | None = None
        self._erasure: ErasureJob | None = None
        self._health = LoopHealth()
        self._erasure_health = LoopHealth()
        self._task = supervise(DATA_EXPORT, self._run, self._health)
        self._erasure_task = supervise(
            f"{DATA_EXPORT}-erasure", self._run_erasure, self._erasure_health
        )

    async def _run_erasure(self) -> None:
        db = await Database.connect(self._settings, application_name=f"{DATA_EXPORT}-erasure")
        redis = make_redis(self._settings)
        try:
            self._erasure = ErasureJob(db, redis, self._settings)
            await self._erasure.run()
        finally:
            await redis.aclose()
            await db.close()

    async def erase_now(self) -> dict[str, int]:
        """One erasure round now: due accounts erased, due scrubs done."""
        if self._erasure is None:
            return {}
        done = await self._erasure.run_once()
        return {"erased": done.erased, "scrubbed": done.scrubbed, "failed": done.failed}

    async def _run(self) -> None:
        db = await Database.connect(self._settings, application_name=DATA_EXPORT)
        try:
            self._worker = ExportWorker(db, self._settings)
            await self._worker.run()
        finally:
            await db.close()

    async def sweep(self) -> int:
        """Expire archives past their lifetime now (the worker does so every few minutes)."""
        if self._worker is None:
            return 0
        return await self._worker.sweep()

    async def status(self) -> dict[str, Any]:
        counts = self._worker.status() if self._worker else {"state": "starting"}
        erasure = self._erasure.status() if self._erasure else {}
        return {
            "name": DATA_EXPORT,
            **counts,
            **erasure,
            "crashes": self._health.crashes + self._erasure_health.crashes,
            "last_crash": self._health.last_error or self._erasure_health.last_error,
        }


def ensure_data_export(settings: Settings) -> Any:
    """Start the data export worker if it is not running (safe to call again)."""
    return DataExportActor.options(  # type: ignore[attr-defined]
        name=DATA_EXPORT, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings)


NOTIFICATION_DIGEST = "nova-notification-digest"


@ray.remote(num_cpus=0, max_restarts=-1)  # type: ignore[call-overload]
class NotificationDigestActor:
    """`actors.notification_digest.DigestJob` in a detached actor: mails notification
    digests to users who are away, every `NOVA_NOTIFICATION_DIGEST_POLL_S`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._job: DigestJob | None = None
        self._health = LoopHealth()
        self._task = supervise(NOTIFICATION_DIGEST, self._run, self._health)

    async def _run(self) -> None:
        db = await Database.connect(self._settings, application_name=NOTIFICATION_DIGEST)
        redis = make_redis(self._settings)
        try:
            self._job = DigestJob(db, redis, self._settings)
            await self._job.run()
        finally:
            await redis.aclose()
            await db.close()

    async def status(self) -> dict[str, Any]:
        totals = self._job.totals if self._job else None
        return {
            "name": NOTIFICATION_DIGEST,
            "mailed": totals.mailed if totals else 0,
            "notifications": totals.notifications if totals else 0,
            "crashes": self._health.crashes,
            "last_crash": self._health.last_error,
        }


def ensure_notification_digest(settings: Settings) -> Any:
    """Start the digest job if it is not running (safe to call again)."""
    return NotificationDigestActor.options(  # type: ignore[attr-defined]
        name=NOTIFICATION_DIGEST, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings)
