"""Imported first by every Ray worker of the embedded stack (`RAY_preload_python_modules`),
before Serve starts a server in it.

- Ray Serve 2.60 binds its gRPC ingress and each replica's internal gRPC server to `[::]`,
  every interface, with no option to choose. On one machine Nova listens on 127.0.0.1
  only, so Python gRPC servers in Ray workers get the node's address instead of the
  wildcard (the address other processes use to reach them anyway).
- Serve's HTTP ingress and the HAProxy in front of it are made safe to face clients: the
  client's address is the connection's, not one a client names, and HAProxy's admin
  socket is its owner's alone (`deployments.serve_patches.harden_serve_ingress`).
- With `NOVA_GRPC_TLS_CERT` set, HAProxy's gRPC frontend speaks TLS
  (`deployments.ingress_tls.terminate_grpc_tls`).
"""

from __future__ import annotations

from deployments.ingress_tls import terminate_grpc_tls
from deployments.serve_patches import bind_grpc_servers_to_node_ip, harden_serve_ingress

bind_grpc_servers_to_node_ip()
harden_serve_ingress()
terminate_grpc_tls()
