"""The Ray task that makes one data export's archive, away from the gateway's replicas.

It reads the person's data from PostgreSQL a page at a time, writes the zip to a local
temporary file (bounded memory whatever the account's size), records progress as each
kind completes (which renews the job's lease), and stores the archive in the media store
under `<export id>/nova-export.zip`, where every gateway replica of a cluster reaches it.
Progress and the lease are fenced by the claim's attempt: a task whose claim was taken over
stops at its next step (`LostClaim`) and leaves the archive to the newer one.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

import ray

from actors.exports.archive import write_archive
from actors.media.tasks import StoreSpec
from storage.db import Database
from storage.export_links import ARCHIVE
from storage.media_store import media_key
from storage.repositories.exports import ExportRepository
from storage.repositories.personal_data import PersonalData
from storage.settings import StorageSettings

# Of the progress, what making the archive counts for; storing it is the rest.
WRITTEN = 0.95


class LostClaim(Exception):
    """The export's claim is no longer this task's: another took it over."""


def make_archive(
    settings: StorageSettings,
    spec: StoreSpec,
    export_id: str,
    user_id: str,
    attempt: int,
    lease_s: float,
) -> dict[str, Any]:
    """`{"size_bytes": n}` once the archive is stored, or `{"lost": True}` if the claim
    was taken over meanwhile."""
    try:
        size = asyncio.run(
            _make(settings, spec, uuid.UUID(export_id), uuid.UUID(user_id), attempt, lease_s)
        )
    except LostClaim:
        return {"lost": True}
    return {"size_bytes": size}


async def _make(
    settings: StorageSettings,
    spec: StoreSpec,
    export_id: uuid.UUID,
    user_id: uuid.UUID,
    attempt: int,
    lease_s: float,
) -> int:
    db = await Database.connect(settings, application_name="nova-data-export-task")
    try:
        jobs = ExportRepository(db)

        async def progress(fraction: float) -> None:
            if not await jobs.advance(export_id, attempt, fraction * WRITTEN, lease_s):
                raise LostClaim(str(export_id))

        store = spec.open()
        with tempfile.TemporaryDirectory(prefix="nova-export-") as work:
            path = Path(work) / ARCHIVE
            await write_archive(path, PersonalData(db), store, user_id, progress)
            await progress(1.0)  # still ours: store it
            store.upload_from(path, media_key(export_id, ARCHIVE), "application/zip")
            return path.stat().st_size
    finally:
        await db.close()


# One CPU: Ray runs no more at once than the cluster has cores for. Ray retries a task
# whose worker died; the archive's key depends only on the export, so a retry overwrites.
export_task = ray.remote(num_cpus=1, max_retries=2)(make_archive)
