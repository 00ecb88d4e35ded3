"""Running the stack's servers: commands with bounded waits, ports, pid files, secrets,
and keeping what they write to the machine's owner.

Every failure is a `StackError` whose message names the part and shows the end of its log.
Servers run with the umask `PRIVATE_UMASK`, so the files they create (a Redis AOF with
cached user records, replica logs) are 0600 and their directories 0700; the stack's own
files are made the same way (`private_dir`, `private_file`, `keep_private`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

LOCALHOST = "127.0.0.1"
# What the stack's servers create is their owner's alone: files 0600, directories 0700.
PRIVATE_UMASK = 0o077
# How much of a failed command's output an error shows.
_OUTPUT_LINES = 40


class StackError(RuntimeError):
    """A part of the stack could not start; the message names it and points at its log."""


def run(
    cmd: list[str],
    *,
    what: str,
    log_file: Path | None = None,
    timeout_s: float = 120,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """`cmd`'s output; `StackError` with the end of its output (and of `log_file`) when it
    fails, times out or is not installed."""
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=cwd,
            check=False,
            stdin=subprocess.DEVNULL,
            umask=PRIVATE_UMASK,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: timed out after {timeout_s:.0f}s ({' '.join(cmd)})") from exc
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {cmd[0]} is not installed") from exc
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip()).splitlines()[-_OUTPUT_LINES:]
        tail = log_tail(log_file) if log_file else ""
        raise StackError(
            f"{what} failed (exit {done.returncode}): "
            + "\n".join(output)
            + (f"\n--- {log_file} ---\n{tail}" if tail else "")
        )
    return done.stdout


def log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def port_open(port: int, host: str = LOCALHOST, timeout_s: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def wait_for_port(port: int, *, what: str, timeout_s: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    raise StackError(
        f"{what} did not listen on {LOCALHOST}:{port} within {timeout_s:.0f}s\n"
        f"--- {log_file} ---\n{log_tail(log_file)}"
    )


def secret(path: Path, generate: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """Read a secret from its 0600 file, creating it with `generate()` on first use."""
    if not path.exists():
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate())
    return path.read_text().strip()


def private_dir(path: Path, *, group: int | None = None) -> Path:
    """Create `path` if need be and keep it to its owner: 0700, or 0710 owned by `group`
    (which may then pass through it to what it owns below, but not list or read it)."""
    path.mkdir(parents=True, exist_ok=True)
    if group is not None:
        os.chown(path, -1, group)
    path.chmod(0o710 if group is not None else 0o700)
    return path


def private_file(path: Path, text: str = "") -> Path:
    """Write `text` to `path` as a 0600 file (an existing file is made 0600 too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    return path


def open_log(path: Path) -> BinaryIO:
    """`path` opened for appending, created 0600 (a server's stdout and stderr go there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def keep_private(root: Path) -> None:
    """Take group and other permissions off everything below `root` (`root` itself keeps
    its mode): what an earlier release or a server's own chmod left open."""
    if not root.is_dir():
        return
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(parent) / name
            with contextlib.suppress(FileNotFoundError):  # gone while we looked
                mode = path.lstat().st_mode
                if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                    path.chmod(stat.S_IMODE(mode) & 0o700)


def pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def process_alive(pid: int) -> bool:
    """Whether `pid` runs. A zombie does not: a server this process started and that was
    killed stays one until reaped, and still answers signal 0."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's (PostgreSQL's, when not root)
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal
    return stat_line.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def reap_children() -> None:
    """Collect children that exited, so none lingers as a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def terminate(pid: int, *, timeout_s: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
