"""`nova backup create`: PostgreSQL, the model store and the media store in one archive.

The database is dumped first, as of one snapshot (pg_dump's). The stores are copied after
it, so they hold every file the dump refers to, and perhaps a few newer ones (a model
registered, a picture processed meanwhile), which a restore keeps as unreferenced files.
Redis and the broker are not copied: what they hold is rebuilt from PostgreSQL or is
transient (docs/operations.md, "Backups and restore").
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from deployments.backup import postgres
from deployments.backup.archive import DATABASE, MEDIA, MODELS, ArchiveWriter, section_of
from deployments.settings import Settings
from storage.errors import NotFound
from storage.media_store import DirectoryStore, open_store
from storage.repositories.restore import admin_connection, contents, schema_version
from storage.settings import StorageSettings
from storage.store_listing import stored_keys

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Created:
    path: Path
    sizes: dict[str, int]  # bytes per section: database, models, media
    files: dict[str, int]  # members per section
    seconds: float


async def _database_facts(settings: Settings) -> dict[str, Any]:
    async with admin_connection(settings) as conn:
        schema = await schema_version(conn)
        return {
            "migration": None if schema is None else schema.__dict__,
            "database": await contents(conn),
        }


def create_backup(settings: Settings, output: Path, *, progress: Progress) -> Created:
    """Write a backup of the stack `settings` describes to `output` (mode 0600)."""
    started = time.monotonic()
    facts = asyncio.run(_database_facts(settings))
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = ArchiveWriter(output)
    try:
        with tempfile.TemporaryDirectory(prefix=".nova-backup-", dir=output.parent) as work:
            dump = Path(work) / DATABASE
            progress("database: pg_dump")
            postgres.dump(settings.direct_database_url, dump)
            writer.add_file(dump, DATABASE)
            dump.unlink()
            progress("model store")
            _add_models(writer, Path(settings.model_store))
            progress("media store")
            add_media(writer, settings, Path(work) / "object")
        sizes = {"database": 0, "models": 0, "media": 0}
        files = dict.fromkeys(sizes, 0)
        for name, member in writer.members.items():
            sizes[section_of(name)] += member.size
            files[section_of(name)] += 1
        writer.finish(
            {
                **facts,
                "nova_version": version("nova"),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "media_store": "s3" if settings.media_store.startswith("s3://") else "directory",
                "sizes": sizes,
                "file_counts": files,
            }
        )
    except BaseException:
        writer.abort()
        raise
    return Created(output, sizes, files, round(time.monotonic() - started, 1))


def _add_models(writer: ArchiveWriter, root: Path) -> None:
    """Every artifact in the model store; hidden files are writes in progress."""
    if not root.is_dir():
        return
    for parent, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(parent) / name
            if path.is_file() and not path.is_symlink():
                writer.add_file(path, MODELS + path.relative_to(root).as_posix())


def add_media(writer: ArchiveWriter, settings: StorageSettings, scratch: Path) -> None:
    """Every object of the media store. A file deleted after the listing (a swept upload,
    an expired export) is left out."""
    store = open_store(
        settings.media_store,
        access_key=settings.media_s3_access_key,
        secret_key=settings.media_s3_secret_key,
    )
    keys = stored_keys(
        settings.media_store,
        access_key=settings.media_s3_access_key,
        secret_key=settings.media_s3_secret_key,
    )
    try:
        for key in keys:
            try:
                if isinstance(store, DirectoryStore):
                    writer.add_file(store.path(key), MEDIA + key)
                    continue
                store.download_to(key, scratch)
            except (FileNotFoundError, NotFound):
                continue
            writer.add_file(scratch, MEDIA + key)
            scratch.unlink()
    finally:
        store.close()
