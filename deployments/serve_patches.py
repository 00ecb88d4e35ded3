"""A narrow workaround for Ray Serve 2.60 listening on every interface.

Each Serve replica starts an inter-deployment gRPC server on `[::]:0`, and the proxy its
gRPC ingress on `[::]:<port>` (both hard-coded). Other processes reach them at the node's
IP, so binding to that IP instead changes nothing for Serve and keeps a one-machine stack
on 127.0.0.1. Replicas apply it in their constructors, which run before Serve starts
their server; every worker of the embedded stack applies it at start
(`deployments.grpc_preload`), which covers the proxy.
"""

from __future__ import annotations

from typing import Any

import ray


def bind_grpc_servers_to_node_ip() -> None:
    """Make every `grpc.aio` server in this process bind the node's IP, not a wildcard.

    Replicas call it in their constructors; `deployments.grpc_preload` calls it at worker
    start, which covers the proxy's gRPC ingress.
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
