"""`nova backup create` and `nova backup restore`: the stack's durable state in one file,
and back into a stack (`deployments.backup`).

nova backup create [--output PATH]
nova backup restore PATH [--force]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deployments.cli.common import connect_ray, load_settings
from deployments.stack import port_open


def add_commands(sub: Any) -> None:
    backup = sub.add_parser("backup", help="back up the stack, or restore a backup into one")
    commands = backup.add_subparsers(dest="backup_command", required=True)
    create = commands.add_parser(
        "create", help="PostgreSQL, the model store and the media store in one archive"
    )
    create.add_argument(
        "--output", help="a file, or a directory (default: nova-backup-<UTC time>.tar here)"
    )
    create.set_defaults(func=cmd_create)
    restore = commands.add_parser(
        "restore", help="restore a backup into an empty stack and rebuild what is derived"
    )
    restore.add_argument("path", help="an archive `nova backup create` wrote")
    restore.add_argument(
        "--force", action="store_true", help="replace a database that already holds accounts"
    )
    restore.set_defaults(func=cmd_restore)


def _say(line: str) -> None:
    print(f"  {line}", flush=True)


def _fail(exc: Exception) -> int:
    print(f"nova backup: {exc}", file=sys.stderr)
    return 1


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"


def output_path(text: str | None) -> Path:
    """Where the archive goes: `text` as a file, or a new name in directory `text` (or
    here)."""
    name = f"nova-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar"
    if text is None:
        return Path.cwd() / name
    path = Path(text)
    return (path / name if path.is_dir() else path).resolve()


def cmd_create(args: argparse.Namespace) -> int:
    from deployments.backup import BackupError, create_backup
    from storage.errors import NovaError

    settings = load_settings()
    try:
        created = create_backup(settings, output_path(args.output), progress=_say)
    except (BackupError, NovaError, OSError) as exc:
        return _fail(exc)
    print(created.path)
    for section in ("database", "models", "media"):
        size, files = created.sizes[section], created.files[section]
        print(f"  {section:<9} {_mb(size):>12}  {files} file{'s' * (files != 1)}")
    total = created.path.stat().st_size
    print(f"  {'archive':<9} {_mb(total):>12}  ({total} bytes, {created.seconds} s)")
    return 0


def _on_ray() -> bool:
    """Connect to the stack's Ray cluster if it answers."""
    address = os.environ.get("RAY_ADDRESS", "")
    where = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = where.hostname, where.port
    except ValueError:  # `auto`, or no port: let Ray find it
        host, port = None, None
    if not address or (host and port and not port_open(port, host, 2.0)):
        _say(f"Ray does not answer at {address or '(RAY_ADDRESS unset)'}: Nova is neither "
             "stopped nor deployed by this restore")  # fmt: skip
        return False
    connect_ray(dict(os.environ))
    return True


def cmd_restore(args: argparse.Namespace) -> int:
    from deployments.backup import BackupError, restore_backup
    from storage.errors import NovaError

    started = time.monotonic()
    settings = load_settings()
    path = Path(args.path)
    if not path.is_file():
        return _fail(FileNotFoundError(f"no backup at {path}"))
    try:
        done = restore_backup(settings, path, force=args.force, connect_ray=_on_ray, progress=_say)
    except (BackupError, NovaError, OSError) as exc:
        return _fail(exc)
    manifest = done.manifest
    taken = manifest.get("migration") or {}
    print(
        f"restored {path}: a backup of {manifest.get('created_at')} by Nova "
        f"{manifest.get('nova_version')} (schema {taken.get('version')})"
    )
    for name, count in (manifest.get("database") or {}).items():
        print(f"  {name:<19} {count}")
    if done.migrations_applied:
        print(f"  migrated forward: {', '.join(done.migrations_applied)}")
    print(
        f"  {done.events_resent} retained events to be sent again (consumers skip what they "
        f"had applied); {done.models} model files, {done.media} media files; "
        f"{done.derived['redis_keys_deleted']} Redis keys deleted, features rebuilt "
        f"({done.derived['features']['posts']} posts)"
    )
    if done.deployed:
        print(
            "  Nova deployed again; timelines and counts rebuild from PostgreSQL as they are read"
        )
    else:
        print("  Nova was not deployed by this restore: `nova up` (or `nova deploy`) serves it")
    steps = ", ".join(f"{step} {s} s" for step, s in done.seconds.items())
    print(f"  took {time.monotonic() - started:.1f} s ({steps})")
    return 0
