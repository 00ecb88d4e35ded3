"""Nothing the embedded stack writes is open to the machine's other users: state files are
0600, directories 0700, and the state dir lets only PostgreSQL's own user (which must reach
its data dir and log) pass through it."""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from deployments.stack import Stack
from tests.support.graphql import register

pytestmark = pytest.mark.stack


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _tree(root: Path) -> Iterator[Path]:
    yield root
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            yield Path(parent) / name


def _open_to_others(paths: Iterator[Path], *, dir_mode: int = 0o700) -> list[str]:
    """Directories with more than `dir_mode`, regular files with any group or other bit."""
    found = []
    for path in paths:
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        too_open = dir_mode if stat.S_ISDIR(st.st_mode) else 0o700
        if (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) and mode & ~too_open:
            found.append(f"{path} {oct(mode)}")
    return found


async def test_state_files_are_0600_and_directories_0700(
    stack: Stack, http_url: str, redis: aioredis.Redis
) -> None:
    # A registration puts a cached user record (with its email address) into Redis's AOF,
    # mails a verification link, and writes replica logs.
    await register(http_url)
    await redis.ping()
    layout = stack.layout
    state = layout.state_dir

    state_mode = _mode(state)
    assert state_mode & 0o007 == 0, f"others may enter the state dir {state}: {oct(state_mode)}"
    if os.geteuid() == 0 and stack.embedded()["postgresql"]:
        # PostgreSQL runs as `postgres`: its group may pass through, not list or read.
        assert grp.getgrgid(state.stat().st_gid).gr_name == "postgres"
        assert state_mode == 0o710, oct(state_mode)
    else:
        assert state_mode == 0o700, oct(state_mode)

    exposed: list[str] = []
    for name in ("redis", "secrets", "mail", "broker", "smtp"):
        exposed += _open_to_others(_tree(layout.path(name)))
    # The logs dir, like the state dir, lets PostgreSQL's group through to its own log.
    exposed += _open_to_others(_tree(layout.path("logs")), dir_mode=0o710)
    exposed += _open_to_others(iter([layout.path("postgres"), layout.path("postgres", "data")]))
    for name in ("nova.env", "embedded.json"):
        exposed += _open_to_others(iter([layout.path(name)]))
    # Ray makes its temp, session, socket and log dirs 0777 itself, again whenever a worker
    # starts; its files, replica logs among them, are the stack's to keep private. This
    # test's own process is a Ray driver too, whose logs follow pytest's umask.
    exposed += [
        entry
        for entry in _open_to_others(_tree(layout.path("ray")), dir_mode=0o777)
        if f"_{os.getpid()}.log " not in entry
    ]
    assert not exposed, "open to other users:\n" + "\n".join(exposed)

    aof = [p for p in _tree(layout.path("redis")) if p.is_file() and ".aof" in p.name]
    assert aof, "Redis writes an append-only file"
    logs = [p for p in _tree(layout.path("ray")) if p.is_file() and p.suffix in (".log", ".out")]
    assert logs, "Ray writes logs under the state dir"
