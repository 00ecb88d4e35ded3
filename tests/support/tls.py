"""Throwaway embedded stacks with TLS on (`Layout.tls`), for the TLS tests.

Each runs the stack's own start code (`deployments.stack.Stack`) in a state dir and on a
port base of its own, away from the dev stack (20000), the session's test stack (21000)
and each other, so it never disturbs them. Parts the test does not need get URLs instead
(`Stack` starts only parts whose URL is unset). Everything it started is stopped, and its
state dir removed, when the test module ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deployments.stack import Layout, Stack, StackError, port_open

# Port bases tried in order; each stack uses base + 1 ... base + 4999, all below 30000.
_BASES = (22_000, 23_000, 24_000, 25_000)
# Unused: parts a TLS test does not start are pointed here.
UNUSED_KAFKA = "127.0.0.1:9"
UNUSED_SMTP = "smtp://127.0.0.1:9"


def _ports(layout: Layout) -> list[int]:
    offsets = (1, 10, 11, 12, 13, 14, 15, 25, 92, 100, 140, 180, 181, 182, 183)
    return [
        layout.pg_port,
        layout.redis_port,
        layout.ray_port,
        layout.dashboard_port,
        layout.http_port,
        layout.grpc_port,
        *(layout.port_base + offset for offset in offsets),
    ]


def tls_layout(name: str) -> Layout:
    """A layout with TLS on, on the first port base whose ports are all free. As root its
    state dir is under /var/lib, where PostgreSQL's user can reach it (not under /tmp's
    private pytest dirs)."""
    root = Path("/var/lib") if os.geteuid() == 0 else Path(tempfile.gettempdir())
    for base in _BASES:
        layout = Layout(
            name=f"tls-{name}",
            # Short: Serve's HAProxy puts its admin socket 70 characters below it, and a
            # socket path is at most 97.
            state_dir=root / f"nova-tls{name}",
            port_base=base,
            http_port=base + 800,
            dashboard_port=base + 265,
            grpc_port=base + 900,
            redis_max_memory_mb=64,
            tls=True,
        )
        if not any(port_open(port) for port in _ports(layout)):
            return layout
    raise StackError(f"no free port base among {_BASES} for a throwaway TLS stack")


def clean_environ(**urls: str) -> dict[str, str]:
    """This process's environment without Nova's and Ray's variables (the session's test
    stack put its own there), plus `urls` for the parts not to start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOVA_", "RAY_"))}
    return {**env, **urls}


@contextlib.contextmanager
def tls_stack(name: str, **urls: str) -> Iterator[tuple[Stack, dict[str, str]]]:
    """Start a throwaway TLS stack (the parts without a URL in `urls`); yield it and the
    environment its processes use; stop it and remove its state dir."""
    layout = tls_layout(name)
    stack = Stack(layout, clean_environ(**urls))
    stack.down()  # whatever an interrupted run left in this state dir
    shutil.rmtree(layout.state_dir, ignore_errors=True)
    try:
        env = stack.up()
        yield stack, env
    finally:
        stack.down()
        shutil.rmtree(layout.state_dir, ignore_errors=True)
