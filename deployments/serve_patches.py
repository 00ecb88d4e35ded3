"""Narrow workarounds for Ray Serve 2.60 listening on every interface.

Each Serve replica starts an inter-deployment gRPC server on `[::]:0` (hard-coded in
`ray.serve._private.replica`). Other replicas reach it at the node's IP, so binding it to
that IP instead changes nothing for Serve and keeps a one-machine stack on 127.0.0.1.
Applied in the replica's constructor, which runs before Serve starts that server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray


def bind_replica_grpc_to_node_ip() -> None:
    from ray.serve._private import replica

    original: Callable[[Any, str], int] = replica.add_port_to_grpc_server  # type: ignore[attr-defined]
    if getattr(original, "_nova_patched", False):
        return
    node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]

    def add_port(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{node_ip}:{address.rsplit(':', 1)[1]}"
        port: int = original(server, address)
        return port

    add_port._nova_patched = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port  # type: ignore[attr-defined]


def bind_grpc_servers_to_node_ip() -> None:
    """Make every `grpc.aio` server in this process bind the node's IP, not a wildcard.

    Covers Serve's gRPC ingress in the proxy, whose server is created inside Serve with
    `[::]:<port>`; applied at worker start by `deployments.grpc_preload`.
    """
    from grpc.aio import _server

    server_class: Any = _server.Server
    if getattr(server_class.add_insecure_port, "_nova_patched", False):
        return

    def node_address(address: str) -> str:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", ""):
            node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            return f"{node_ip}:{port}"
        return address

    insecure, secure = server_class.add_insecure_port, server_class.add_secure_port

    def add_insecure_port(self: Any, address: str) -> int:
        port: int = insecure(self, node_address(address))
        return port

    def add_secure_port(self: Any, address: str, credentials: Any) -> int:
        port: int = secure(self, node_address(address), credentials)
        return port

    add_insecure_port._nova_patched = True  # type: ignore[attr-defined]
    server_class.add_insecure_port = add_insecure_port
    server_class.add_secure_port = add_secure_port
