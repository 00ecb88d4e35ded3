"""`nova backup restore`: a backup into a stack, then everything derived rebuilt.

In order: read the manifest and refuse a backup from a newer schema, or a database that
already holds accounts (unless forced); check every member's checksum; stop Nova on Ray;
replace the database (drop the schema, pg_restore, migrate forward); forget the old
stack's signing keys and broker (`storage.repositories.restore`); copy the model and media
files; empty Nova's Redis keys and rebuild the online features; deploy Nova again, whose
shards then rebuild timelines and counts from PostgreSQL as users come, and whose relays
send every retained event to the new broker, where consumers skip what their restored
ledgers say they applied.
"""

from __future__ import annotations

import asyncio
import mimetypes
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.backup import postgres
from deployments.backup.archive import DATABASE, MEDIA, MODELS, ArchiveReader, BackupError
from deployments.backup.derived import rebuild_derived
from deployments.settings import Settings
from storage.db import Database
from storage.errors import InvalidInput
from storage.kafka.topics import CATALOGUE, capped, sync_catalogue
from storage.media_store import DirectoryStore, media_key, open_store
from storage.migrate import load_migrations, migrate
from storage.redis_client import make_redis
from storage.repositories.restore import (
    admin_connection,
    adopt_topic_partitions,
    empty_database,
    forget_signing_keys,
    start_event_log_again,
    user_count,
)
from storage.settings import StorageSettings

Progress = Callable[[str], None]


@dataclass
class Restored:
    manifest: dict[str, Any]
    checked_bytes: int = 0
    stopped: list[str] = field(default_factory=list)
    migrations_applied: list[str] = field(default_factory=list)
    events_resent: int = 0
    models: int = 0
    media: int = 0
    derived: dict[str, Any] = field(default_factory=dict)
    deployed: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] = round(time.monotonic() - started, 1)


def check_schema(manifest: dict[str, Any]) -> None:
    """Refuse a backup whose schema is newer than this Nova's migrations."""
    newest = load_migrations()[-1]
    taken = manifest.get("migration")
    if taken and int(taken["version"]) > newest.version:
        raise BackupError(
            f"the backup's schema is at migration {int(taken['version']):04d}_{taken['name']}, "
            f"newer than this Nova's {newest.version:04d}_{newest.name}: restore it with Nova "
            f"{manifest.get('nova_version')} or newer"
        )


async def _accounts(settings: Settings) -> int:
    async with admin_connection(settings) as conn:
        return await user_count(conn)


def restore_backup(
    settings: Settings,
    path: Path,
    *,
    force: bool,
    connect_ray: Callable[[], bool],
    progress: Progress,
) -> Restored:
    """Restore `path` into the stack `settings` describes. `connect_ray` connects to its
    Ray cluster once the archive checked out, and says whether it could: then Nova is
    stopped first and deployed again after."""
    from deployments.backup.deployment import deploy_nova, stop_nova

    reader = ArchiveReader(path)
    done = Restored(reader.manifest)
    try:
        check_schema(done.manifest)
        accounts = asyncio.run(_accounts(settings))
        if accounts and not force:
            raise BackupError(
                f"the database already holds {accounts} account{'s' * (accounts != 1)}, and a "
                "restore replaces everything in it: restore into an empty stack, or pass "
                "--force to replace them"
            )
        with done.timed("verify"):
            progress("checking every file against the manifest")
            done.checked_bytes = reader.verify()
        with done.timed("connect"):
            on_ray = connect_ray()
        if on_ray:
            with done.timed("stop"):
                progress("stopping Nova on Ray")
                done.stopped = stop_nova()
        try:
            _replace(settings, reader, done, progress)
        except Exception as exc:
            raise BackupError(
                f"{exc}\nThe restore stopped half-way: Nova is not running and the database "
                "is incomplete. Run `nova backup restore --force` again once the cause is fixed."
            ) from exc
        if on_ray and done.stopped:
            with done.timed("deploy"):
                progress("deploying Nova")
                deploy_nova(settings)
                done.deployed = True
    finally:
        reader.close()
    return done


def _replace(settings: Settings, reader: ArchiveReader, done: Restored, progress: Progress) -> None:
    """The database, the stores and Redis, from the archive."""
    with done.timed("database"), tempfile.TemporaryDirectory(prefix="nova-restore-") as work:
        progress("database: pg_restore")
        dump = Path(work) / DATABASE
        reader.extract(DATABASE, dump)
        asyncio.run(_restore_database(settings, dump, done))
    with done.timed("stores"):
        progress("model and media stores")
        done.models = restore_models(reader, Path(settings.model_store))
        done.media = restore_media(reader, settings)
    with done.timed("derived"):
        done.derived = asyncio.run(_rebuild(settings, progress))


async def _restore_database(settings: Settings, dump: Path, done: Restored) -> None:
    async with admin_connection(settings) as conn:
        await empty_database(conn)
    await asyncio.to_thread(postgres.restore, settings.direct_database_url, dump)
    limit = settings.kafka_max_partitions
    async with admin_connection(settings) as conn:
        done.migrations_applied = await migrate(conn)
        async with conn.transaction():
            await sync_catalogue(conn, max_partitions=limit)
            await adopt_topic_partitions(
                conn, {t.name: capped(t.partitions, limit) for t in CATALOGUE}
            )
            await forget_signing_keys(conn)
        created = done.manifest.get("created_at", "?")
        done.events_resent = await start_event_log_again(
            conn, f"restored from a backup of {created}"
        )


def restore_models(reader: ArchiveReader, root: Path) -> int:
    """Write the backup's model files over the model store; how many."""
    names = reader.names(MODELS)
    for name in names:
        reader.extract(name, root / name.removeprefix(MODELS))
    return len(names)


def restore_media(reader: ArchiveReader, settings: StorageSettings) -> int:
    """Write the backup's media files over the media store (a directory or a bucket);
    how many. Files the backup does not have stay."""
    store = open_store(
        settings.media_store,
        access_key=settings.media_s3_access_key,
        secret_key=settings.media_s3_secret_key,
    )
    names = reader.names(MEDIA)
    try:
        store.ensure_bucket()
        with tempfile.TemporaryDirectory(prefix="nova-restore-") as work:
            scratch = Path(work) / "object"
            for name in names:
                key = _media_key(name.removeprefix(MEDIA))
                if isinstance(store, DirectoryStore):
                    reader.extract(name, store.path(key))
                    continue
                reader.extract(name, scratch)
                store.upload_from(scratch, key, mimetypes.guess_type(key)[0])
    finally:
        store.close()
    return len(names)


def _media_key(name: str) -> str:
    media_id, _, file = name.partition("/")
    try:
        return media_key(uuid.UUID(media_id), file)
    except (ValueError, InvalidInput):
        raise BackupError(f"media/{name}: not a media key") from None


async def _rebuild(settings: Settings, progress: Progress) -> dict[str, Any]:
    db = await Database.connect(settings, application_name="nova-restore")
    redis = make_redis(settings)
    try:
        return await rebuild_derived(db, redis, settings, progress)
    finally:
        await redis.aclose()
        await db.close()
