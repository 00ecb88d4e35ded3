"""pg_dump and pg_restore, run against Nova's database URL.

The password never appears on a command line (where `ps` shows it to every user): it is
taken out of the URL and handed over in `PGPASSWORD`. The tools come from Debian's
`postgresql` (the newest installed), else from `PATH`; pg_dump refuses a server newer than
itself, so on a cluster run it where a client at least as new as the server is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from deployments.backup.archive import BackupError
from deployments.stack.debian import postgres_bin_dir

# Bound on reaching the server; the dump or restore itself takes as long as the data needs.
CONNECT_TIMEOUT_S = "10"


def tool(name: str) -> str:
    bin_dir = postgres_bin_dir()
    if bin_dir is not None and (bin_dir / name).exists():
        return str(bin_dir / name)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian's postgresql-client has it)")
    return found


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries the password."""
    parts = urlsplit(url)
    env = {**os.environ, "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT_S}
    env.pop("PGPASSWORD", None)
    if parts.password is None:
        return url, env
    env["PGPASSWORD"] = unquote(parts.password)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}")), env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BackupError(f"{what} failed (exit {done.returncode}):\n{tail}")


def dump(url: str, target: Path) -> None:
    """The whole database, as of one snapshot, in pg_dump's custom format."""
    dbname, env = libpq_target(url)
    _run(
        [tool("pg_dump"), "--format=custom", "--no-password", f"--file={target}", dbname],
        env,
        "pg_dump",
    )


def restore(url: str, source: Path) -> None:
    """Fill an empty database from a dump, all or nothing (one transaction). Objects are
    owned by whoever restores, whatever role owned them where the dump was made."""
    dbname, env = libpq_target(url)
    _run(
        [
            tool("pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
            f"--dbname={dbname}",
            str(source),
        ],
        env,
        "pg_restore",
    )
