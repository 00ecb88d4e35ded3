"""Debian packages the embedded stack needs: PostgreSQL and Redis, installed when missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deployments.stack.processes import StackError, run


def ensure_debian_packages() -> None:
    """Install Debian's postgresql and redis-server if they are missing (needs root)."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages {missing}: install them, or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} ...", flush=True)
    run(["apt-get", "update", "-qq"], what="apt-get update", timeout_s=600, env=env)
    run(
        ["apt-get", "install", "-y", "-qq", *missing],
        what="apt-get install",
        timeout_s=900,
        env=env,
    )


def postgres_bin_dir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None
