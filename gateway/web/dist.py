"""The built web client, as the gateway serves it: the two pages and the hashed assets
that `gateway/web/client/build.mjs` writes into `gateway/web/dist/`.

A build replaces the whole directory and writes `manifest.json` last, so the manifest's
modification time names a build: `Dist.current()` reloads the pages and the list of
assets whenever it changes, and answers None while there is no manifest (the client was
never built, or a build is under way). Asset bytes are read once per build, in a thread,
and kept: their total is the size of the build.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Asset", "Build", "Dist"]

MANIFEST = "manifest.json"
PAGES = ("app", "graphiql")
# What build.mjs names its outputs: `<name>-<hash>.<ext>[.<ext>...]`. Nothing else in
# assets/ is served, so no request names a path outside it.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
}


@dataclass(frozen=True)
class Asset:
    """One file of assets/, and its gzip sibling when the build wrote one."""

    path: Path
    content_type: str
    gzip_path: Path | None


@dataclass
class Build:
    """One build: its pages' HTML and its assets by name."""

    version: int
    pages: dict[str, bytes]
    assets: dict[str, Asset]
    _bytes: dict[Path, bytes] = field(default_factory=dict)

    async def read(self, path: Path) -> bytes | None:
        """The file's bytes (kept for the build's lifetime); None if it is gone, as when
        a newer build replaced this one."""
        cached = self._bytes.get(path)
        if cached is None:
            try:
                cached = await asyncio.to_thread(path.read_bytes)
            except OSError:
                return None
            self._bytes[path] = cached
        return cached


class Dist:
    """`gateway/web/dist`, or another directory laid out the same way."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._build: Build | None = None

    async def current(self) -> Build | None:
        """The build on disk now, or None when there is none."""
        try:
            version = (self.directory / MANIFEST).stat().st_mtime_ns
        except OSError:
            return None
        if self._build is None or self._build.version != version:
            try:
                self._build = await asyncio.to_thread(_load, self.directory, version)
            except OSError:
                return None  # replaced while we read it; the next request sees the new one
        return self._build


def _load(directory: Path, version: int) -> Build:
    pages = {page: (directory / f"{page}.html").read_bytes() for page in PAGES}
    names = {path.name for path in (directory / "assets").iterdir() if path.is_file()}
    assets = {
        name: Asset(
            path=directory / "assets" / name,
            content_type=_TYPES.get(Path(name).suffix, "application/octet-stream"),
            gzip_path=directory / "assets" / f"{name}.gz" if f"{name}.gz" in names else None,
        )
        for name in names
        if _ASSET_NAME.match(name) and not name.endswith(".gz")
    }
    return Build(version=version, pages=pages, assets=assets)
