"""The backup archive: one uncompressed tar file (pg_dump's custom format is compressed
already, and so are pictures and video) whose last member, `manifest.json`, lists every
other member with its size and SHA-256.

Members: `database.pgdump`, `models/<path in the model store>`, `media/<media key>`.
An archive is written under a temporary name and renamed when whole, mode 0600: a backup
that failed half-way is never mistaken for one. A reader checks every member against the
manifest before anything is restored, and refuses names that could reach outside the
directory they are restored into.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

FORMAT = "nova-backup/1"
MANIFEST = "manifest.json"
DATABASE = "database.pgdump"
MODELS = "models/"
MEDIA = "media/"
CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup cannot be made or restored; the message says why and what to do."""


@dataclass(frozen=True)
class Member:
    size: int
    sha256: str


class _Hashing(io.RawIOBase):
    """A file read through, hashing what passes."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._handle.read(-1 if size is None else size)
        self.digest.update(data)
        return data


def section_of(name: str) -> str:
    """`database`, `models` or `media`: which part of Nova's state a member belongs to."""
    return name.split("/", 1)[0].removesuffix(".pgdump")


def safe_name(name: str) -> str:
    """`name` if it is a plain relative path inside the archive; `BackupError` if not."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts):
        raise BackupError(f"the archive holds a member named {name!r}, which no backup writes")
    return str(path)


@dataclass
class ArchiveWriter:
    """Adds files and a manifest to a new archive at `path`."""

    path: Path
    members: dict[str, Member] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._partial = self.path.with_name(f".{self.path.name}.partial")
        fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._tar = tarfile.TarFile(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)

    def add_file(self, source: Path, name: str) -> Member:
        """Add the file `source` as member `name`; returns its size and checksum."""
        with source.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            info = tarfile.TarInfo(safe_name(name))
            info.size, info.mtime, info.mode = size, int(time.time()), 0o600
            reader = _Hashing(handle)
            self._tar.addfile(info, reader)
        member = Member(size, reader.digest.hexdigest())
        self.members[info.name] = member
        return member

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write the manifest (with every member's size and checksum) and make the archive
        appear under its name."""
        body = dict(manifest, format=FORMAT)
        body["files"] = {name: m.__dict__ for name, m in self.members.items()}
        data = json.dumps(body, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._tar.close()
        self._file.close()
        self._partial.unlink(missing_ok=True)


class ArchiveReader:
    """An archive opened for restoring: its manifest, a check of every member, and the
    members' bytes."""

    def __init__(self, path: Path) -> None:
        try:
            self._tar = tarfile.TarFile(path, mode="r")
            self.manifest = self._read_manifest()
        except (OSError, tarfile.TarError) as exc:
            raise BackupError(f"{path} is not a readable Nova backup: {exc}") from exc
        self.members = {
            safe_name(name): Member(int(m["size"]), str(m["sha256"]))
            for name, m in self.manifest["files"].items()
        }

    def _read_manifest(self) -> dict[str, Any]:
        try:
            handle = self._tar.extractfile(MANIFEST)
        except KeyError:
            raise BackupError(f"no {MANIFEST}: not a Nova backup, or cut short") from None
        assert handle is not None
        manifest: dict[str, Any] = json.loads(handle.read())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"unknown backup format {manifest.get('format')!r}")
        return manifest

    def verify(self) -> int:
        """Read every member and compare it with the manifest; the bytes checked."""
        seen: set[str] = set()
        checked = 0
        for info in self._tar:
            if info.name == MANIFEST:
                continue
            name = safe_name(info.name)
            expected = self.members.get(name)
            if expected is None or not info.isfile():
                raise BackupError(f"{name}: in the archive but not in its manifest")
            digest = hashlib.sha256()
            for chunk in self._chunks(info):
                digest.update(chunk)
            if (info.size, digest.hexdigest()) != (expected.size, expected.sha256):
                raise BackupError(f"{name}: its checksum differs from the manifest's (damaged)")
            seen.add(name)
            checked += info.size
        missing = sorted(set(self.members) - seen)
        if missing:
            raise BackupError(f"members missing from the archive: {', '.join(missing[:5])}")
        return checked

    def names(self, prefix: str) -> list[str]:
        return sorted(name for name in self.members if name.startswith(prefix))

    def extract(self, name: str, target: Path) -> None:
        """Write member `name` to `target`, whole or not at all (a temporary name, then
        a rename)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.restoring")
        try:
            with partial.open("wb") as out:
                for chunk in self._chunks(self._tar.getmember(name)):
                    out.write(chunk)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def _chunks(self, info: tarfile.TarInfo) -> Iterator[bytes]:
        handle = self._tar.extractfile(info)
        assert handle is not None
        while chunk := handle.read(CHUNK):
            yield chunk

    def close(self) -> None:
        self._tar.close()
