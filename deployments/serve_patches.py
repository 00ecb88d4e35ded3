"""Narrow workarounds for Ray Serve 2.60: servers listening on every interface, an ingress
that believes what clients say about their address, and no signal to user code when a
replica starts to stop.

Each Serve replica starts an inter-deployment gRPC server on `[::]:0`, and the proxy its
gRPC ingress on `[::]:<port>` (both hard-coded). Other processes reach them at the node's
IP, so binding to that IP instead changes nothing for Serve and keeps a one-machine stack
on 127.0.0.1. Replicas apply it in their constructors, which run before Serve starts
their server; every worker of the embedded stack applies it at start
(`deployments.worker_preload`), which covers the proxy.

`harden_serve_ingress` binds Serve's HAProxy to that host too, locks its admin socket to
its owner, and makes it, not the client, say where a request came from.

`before_graceful_shutdown` wraps the step where Serve starts stopping a replica, so the
gateway can close its WebSockets with 1012 before Serve waits for them (`gateway.transport.drain`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import ray

log = logging.getLogger(__name__)


def bind_grpc_servers_to_node_ip() -> None:
    """Make every `grpc.aio` server in this process bind the node's IP, not a wildcard.

    Replicas call it in their constructors; `deployments.worker_preload` calls it at worker
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


def before_graceful_shutdown(hook: Callable[[], Awaitable[object]], *, timeout_s: float) -> bool:
    """Have Serve await `hook` when it starts to stop this replica, before it waits for the
    replica's ongoing requests to finish; call from the replica's constructor.

    Serve 2.60 tells user code only afterwards (`__del__`), and waits for ongoing requests
    first: a replica holding WebSockets, which never finish by themselves, can't close them
    in time to matter. The hook runs on the constructor's event loop, for at most
    `timeout_s`; whatever it raises is logged, and the stop goes on. Returns False (and the
    replica stops as before) if this Serve has no such step to wrap.
    """
    try:
        from ray.serve._private.replica import Replica
    except ImportError:
        log.warning("Serve's Replica class moved: replicas will not drain before stopping")
        return False
    original = getattr(Replica, "perform_graceful_shutdown", None)
    if original is None:
        log.warning("Serve has no perform_graceful_shutdown: replicas will not drain first")
        return False
    # Called again in the same process (a constructor retried): the new hook replaces the
    # old one instead of running after it.
    original = getattr(original, "_nova_original", original)
    user_loop = asyncio.get_running_loop()

    async def run_hook() -> None:
        if asyncio.get_running_loop() is user_loop:
            await asyncio.wait_for(hook(), timeout_s)
        else:  # user code on its own thread (RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD)
            future = asyncio.run_coroutine_threadsafe(_awaited(hook), user_loop)
            await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)

    async def perform_graceful_shutdown(self: Any) -> None:
        try:
            await run_hook()
        except Exception:
            log.exception("the replica's pre-shutdown hook failed; stopping anyway")
        await original(self)

    perform_graceful_shutdown._nova_original = original  # type: ignore[attr-defined]
    Replica.perform_graceful_shutdown = perform_graceful_shutdown  # type: ignore[method-assign]
    return True


async def _awaited(hook: Callable[[], Awaitable[object]]) -> None:
    await hook()


# What HAProxy's http frontend does first with every request: the client's address is the
# connection's, whatever the client wrote.
_CLIENT_ADDRESS_RULES = """
    # The client's address is the connection's: what a client says about it is dropped.
    http-request del-header forwarded
    http-request del-header x-real-ip
    http-request set-header x-forwarded-for %[src]"""
_HTTP_FRONTEND_BIND = "bind {{ config.frontend_host }}:{{ config.frontend_port }}"
_ADMIN_SOCKET = "stats socket {{ config.socket_path }} mode 666 level admin"


def harden_serve_ingress() -> None:
    """Make Serve's HTTP ingress in this process, and the HAProxy in front of it, safe to
    face clients; every worker of the embedded stack applies it at start
    (`deployments.worker_preload`).

    - HAProxy (when `RAY_SERVE_ENABLE_HA_PROXY=1`: nothing else imports Serve's HAProxy
      module): its Prometheus frontend binds `:<port>` and its stats page `*:<port>`,
      every interface, in Serve 2.60's template; they bind Serve's HTTP host (127.0.0.1
      here) as its HTTP frontend does. Its admin socket, mode 666 at level admin (anyone
      on the machine could reconfigure it), is mode 600. Its HTTP frontend drops the
      `Forwarded`, `X-Real-IP` and `X-Forwarded-For` a client sends and sets
      `X-Forwarded-For` to the address that connected: only the gateway decides whom to
      believe (`gateway.transport.client_address`).
    - The uvicorn servers Serve starts in this process (a replica's direct ingress, the
      proxy) take a connection's address as it is: by default uvicorn replaces it with
      `X-Forwarded-For` from any loopback peer, so a client on the machine that went
      around HAProxy could name any address. Uvicorn reads `FORWARDED_ALLOW_IPS` when
      Serve starts a server, after this.
    """
    os.environ["FORWARDED_ALLOW_IPS"] = ""  # no peer is trusted: the gateway decides
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        return
    from ray.serve._private import haproxy, haproxy_templates

    template: str = haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    patched = (
        template.replace(
            "bind :{{ config.metrics_port }}",
            "bind {{ config.frontend_host }}:{{ config.metrics_port }}",
        )
        .replace(
            "bind *:{{ config.stats_port }}",
            "bind {{ config.frontend_host }}:{{ config.stats_port }}",
        )
        .replace(_ADMIN_SOCKET, _ADMIN_SOCKET.replace("mode 666", "mode 600"))
        .replace(_HTTP_FRONTEND_BIND, _HTTP_FRONTEND_BIND + _CLIENT_ADDRESS_RULES)
    )
    if (
        patched.count("{{ config.frontend_host }}:") < 3
        or "mode 666" in patched
        or patched.count(_CLIENT_ADDRESS_RULES) != 1
    ):
        log.warning("Serve's HAProxy template changed: it is not patched")
        return
    haproxy_templates.HAPROXY_CONFIG_TEMPLATE = patched
    haproxy.HAPROXY_CONFIG_TEMPLATE = patched  # type: ignore[attr-defined]
