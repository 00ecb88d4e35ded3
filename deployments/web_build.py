"""Building the web client: `ensure_web_client()` turns `gateway/web/client` into
`gateway/web/dist` when the client's sources changed since the last build.

The sources are `package.json`, `package-lock.json`, `build.mjs`, the page templates
(`*.html`) and everything under `src/` and `graphiql/`; their SHA-256 is written into
`dist/` after a build, so a later call with the same sources does nothing. A build runs
`npm ci` (only when `node_modules` is missing or was installed from another lock file)
and `node build.mjs`, each with a time limit. Node.js and npm come from Debian's `nodejs`
and `npm` when missing.

`nova up` and `nova test` call it; `python -m deployments.web_build` runs it alone (a
node that serves the gateway on a Ray cluster needs a build of its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from deployments.stack.debian import ensure_node
from deployments.stack.processes import StackError, run
from gateway.web import CLIENT_DIR, DIST_DIR

__all__ = ["ensure_web_client", "main", "source_hash"]

SOURCE_FILES = ("package.json", "package-lock.json", "build.mjs")
SOURCE_DIRS = ("src", "graphiql")
# In dist/: the sources' hash it was built from. In node_modules/: the lock file's hash.
BUILD_STAMP = ".sources-sha256"
INSTALL_STAMP = ".package-lock-sha256"
NPM_CI_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 300
# esbuild 0.28, the bundler, needs it; Debian 12 ships Node.js 18.
MIN_NODE_MAJOR = 18


def source_hash(client: Path = CLIENT_DIR) -> str:
    """SHA-256 over the client's sources, names and contents, in a stable order."""
    files = [client / name for name in SOURCE_FILES] + sorted(client.glob("*.html"))
    for directory in SOURCE_DIRS:
        files += sorted(path for path in (client / directory).rglob("*") if path.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(client).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def ensure_web_client(client: Path = CLIENT_DIR) -> bool:
    """Build the client into `dist/` beside it (where build.mjs writes) unless it was
    built from these sources; True if it built. Raises `StackError`, naming the step and
    showing the end of its output, on failure."""
    dist = client.parent / "dist"
    with _locked(client):
        wanted = source_hash(client)
        if _read(dist / BUILD_STAMP) == wanted and (dist / "manifest.json").is_file():
            return False
        ensure_node()
        _check_node_version()
        print("building the web client (gateway/web/client) ...", flush=True)
        lock_hash = hashlib.sha256((client / "package-lock.json").read_bytes()).hexdigest()
        modules = client / "node_modules"
        if _read(modules / INSTALL_STAMP) != lock_hash:
            run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                what="npm ci",
                cwd=client,
                env={**os.environ, "npm_config_update_notifier": "false"},
                timeout_s=NPM_CI_TIMEOUT_S,
            )
            (modules / INSTALL_STAMP).write_text(lock_hash + "\n")
        run(["node", "build.mjs"], what="node build.mjs", cwd=client, timeout_s=BUILD_TIMEOUT_S)
        (dist / BUILD_STAMP).write_text(wanted + "\n")
        return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the client directory (flock on the directory itself, so no
    file is left behind): two commands never build at once."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _check_node_version() -> None:
    version = run(["node", "--version"], what="node --version", timeout_s=30)
    found = re.match(r"v(\d+)\.", version.strip())
    if found is None or int(found.group(1)) < MIN_NODE_MAJOR:
        raise StackError(
            f"the web client needs Node.js {MIN_NODE_MAJOR} or later to build; "
            f"`node --version` says {version.strip()!r}"
        )


def main() -> int:
    """`python -m deployments.web_build`: build the client if its sources changed."""
    try:
        built = ensure_web_client()
    except StackError as exc:
        print(f"web build: {exc}", file=sys.stderr)
        return 1
    print(f"web client {'built' if built else 'up to date'}: {DIST_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
