"""TLS on Serve's gRPC ingress, terminated by the HAProxy Serve runs in front of it.

Serve 2.60 has no TLS for gRPC: `gRPCOptions` takes none, and its gRPC servers (the proxy,
ingress replicas' direct ingress) bind plaintext ports (`add_insecure_port`). With HAProxy
in front (`RAY_SERVE_ENABLE_HA_PROXY=1`, as Nova runs Serve), HAProxy's gRPC frontend owns
the public port, and HAProxy can speak TLS: its bind line gets the certificate (`ssl crt`,
ALPN h2, which gRPC clients require) and, optionally, the CA whose client certificates it
demands. Plaintext callers then fail the handshake. Behind it, HAProxy reaches the replicas
in cleartext HTTP/2 on the node's address, as it does for HTTP.

Serve renders HAProxy's config in its own actor, so the settings are read from the
worker's environment when it starts (`deployments.worker_preload`):
`NOVA_GRPC_TLS_CERT` (a PEM holding the certificate and its key, as `nova certs create`
writes `<node>.pem`) and `NOVA_GRPC_TLS_CLIENT_CA` (their meaning is in
`deployments.settings.Settings`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

CERT_VARIABLE = "NOVA_GRPC_TLS_CERT"
CLIENT_CA_VARIABLE = "NOVA_GRPC_TLS_CLIENT_CA"
# HAProxy's gRPC frontend in Serve 2.60's config template.
GRPC_BIND = "bind {{ config.grpc_frontend_host }}:{{ config.grpc_frontend_port }} proto h2"


def grpc_tls_bind(cert: str, client_ca: str | None = None) -> str:
    """The gRPC frontend's bind line with TLS (and client certificates, given a CA)."""
    line = f'{GRPC_BIND} ssl crt "{cert}" alpn h2'
    if client_ca:
        line += f' ca-file "{client_ca}" verify required'
    return line


def terminate_grpc_tls(environ: Mapping[str, str] = os.environ) -> bool:
    """Have HAProxy's gRPC frontend in this process's Serve speak TLS when
    `NOVA_GRPC_TLS_CERT` is set; whether it does. Idempotent."""
    cert = environ.get(CERT_VARIABLE)
    if not cert:
        return False
    if environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        log.error(
            "%s is set but Serve runs without HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1): its gRPC "
            "proxy has no TLS, so the gRPC ingress stays plaintext",
            CERT_VARIABLE,
        )
        return False
    from ray.serve._private import haproxy, haproxy_templates

    template: str = haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    if f"{GRPC_BIND} ssl " in template:
        return True  # already applied in this process
    if template.count(GRPC_BIND) != 1:
        log.error("Serve's HAProxy template changed: the gRPC ingress stays plaintext")
        return False
    patched = template.replace(GRPC_BIND, grpc_tls_bind(cert, environ.get(CLIENT_CA_VARIABLE)))
    haproxy_templates.HAPROXY_CONFIG_TEMPLATE = patched
    haproxy.HAPROXY_CONFIG_TEMPLATE = patched  # type: ignore[attr-defined]
    return True
