"""Debian packages Nova needs, installed when missing (as root): PostgreSQL, Redis and
Prometheus for the embedded stack, ffmpeg for the media tasks that transcode video, Node.js
and npm to build the web client, Chromium for the browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from deployments.stack.processes import StackError, run

# Debian's Chromium; browser tests and bench/client.py launch it through Playwright, which
# never downloads one, with these flags: headless, as root, and no network of its own (no
# updates, sync or background fetches on a closed machine).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def ensure_debian_packages() -> None:
    """Install Debian's postgresql, redis-server, ffmpeg and prometheus if they are missing
    (needs root)."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        missing.append("ffmpeg")
    install_debian_packages(missing)
    ensure_prometheus()


def ensure_prometheus() -> None:
    """Install Debian's prometheus (with its `promtool`) if it is missing (needs root).

    Without its recommended node exporter, and with the packaged service left off: that
    one listens on every interface (:9090), while the stack runs its own on loopback."""
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    install_debian_packages(["prometheus"], recommends=False)
    if Path("/run/systemd/system").is_dir():  # booted with systemd: the package started it
        run(
            ["systemctl", "disable", "--now", "prometheus.service"],
            what="systemctl disable prometheus",
            timeout_s=60,
        )


def ensure_node() -> None:
    """Install Debian's nodejs and npm if `node` or `npm` is missing (needs root)."""
    commands = {"node": "nodejs", "npm": "npm"}
    install_debian_packages([package for cmd, package in commands.items() if not shutil.which(cmd)])


def ensure_chromium() -> None:
    """Install Debian's chromium if `/usr/bin/chromium` is missing (needs root)."""
    install_debian_packages([] if CHROMIUM.exists() else ["chromium"])


def install_debian_packages(packages: Sequence[str], *, recommends: bool = True) -> None:
    """`apt-get install` these packages, after an `apt-get update`; nothing if none."""
    if not packages:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages {list(packages)}: install them, or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(packages)} ...", flush=True)
    run(["apt-get", "update", "-qq"], what="apt-get update", timeout_s=600, env=env)
    run(
        [
            "apt-get",
            "install",
            "-y",
            "-qq",
            *([] if recommends else ["--no-install-recommends"]),
            *packages,
        ],
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
