"""Running the stack's servers: commands with bounded waits, ports, pid files, secrets.

Every failure is a `StackError` whose message names the part and shows the end of its log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

LOCALHOST = "127.0.0.1"


class StackError(RuntimeError):
    """A part of the stack could not start; the message names it and points at its log."""


def run(
    cmd: list[str],
    *,
    what: str,
    log_file: Path | None = None,
    timeout_s: float = 120,
    env: dict[str, str] | None = None,
) -> str:
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: timed out after {timeout_s:.0f}s ({' '.join(cmd)})") from exc
    if done.returncode != 0:
        tail = log_tail(log_file) if log_file else ""
        raise StackError(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate())
    return path.read_text().strip()


def pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


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
