"""Imported first by every Ray worker of the embedded stack (`RAY_preload_python_modules`).

Ray Serve 2.60 binds its gRPC ingress and each replica's internal gRPC server to `[::]`,
every interface, with no option to choose. On one machine Nova listens on 127.0.0.1
only, so Python gRPC servers in Ray workers get the node's address instead of the
wildcard. The node's address is what other processes use to reach them anyway. The
HAProxy that Serve's controller runs gets the same treatment (`bind_haproxy_to_node_ip`).
"""

from __future__ import annotations

from deployments.serve_patches import bind_grpc_servers_to_node_ip, bind_haproxy_to_node_ip

bind_grpc_servers_to_node_ip()
bind_haproxy_to_node_ip()
