"""On one machine every server Nova starts listens on 127.0.0.1 only (Ray and Serve's HTTP
and gRPC ingress included)."""

from __future__ import annotations

import psutil
import pytest

from deployments.settings import Settings

pytestmark = pytest.mark.stack

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
# Process names of the stack's servers; Ray's Python processes say "ray" in their command.
OURS = ("ray", "raylet", "gcs_server", "postgres", "redis", "tansu")


def test_no_server_of_the_stack_listens_beyond_loopback(deployed: Settings) -> None:
    exposed = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or conn.laddr.ip in LOOPBACK or conn.pid is None:
            continue
        try:
            process = psutil.Process(conn.pid)
            name, command = process.name(), " ".join(process.cmdline())
        except psutil.Error:
            continue
        if any(part in name.lower() for part in OURS) or "ray" in command:
            exposed.append((name, conn.laddr.ip, conn.laddr.port))
    assert exposed == []
    listening = {
        c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
    }
    assert deployed.grpc_port in listening
