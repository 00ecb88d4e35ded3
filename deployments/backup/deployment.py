"""Nova's deployment on Ray, stopped before a restore and deployed again after it.

Nothing of Nova may run while its database is replaced: relays and consumers would write to
tables being dropped, shards and gateway replicas would keep the old stack's state in
memory (its signing key, counts, timelines). So a restore stops both Serve applications and
every named actor in Nova's namespace (shards, relays, consumers, the media processor and
the jobs), and `deploy` starts them all again on the restored data. Serve itself, its HTTP
and gRPC options, and Ray stay up. The caller has connected to Ray.
"""

from __future__ import annotations

import time

import ray
from ray import serve

from deployments.app import APP_NAME, RANKING_APP, deploy
from deployments.backup.archive import BackupError
from deployments.settings import Settings
from deployments.stack import LOCALHOST
from deployments.workers import NAMESPACE

# The gateway closes its WebSockets for up to 35 s before Serve stops a replica.
STOP_TIMEOUT_S = 120.0


def running_applications() -> list[str]:
    """Nova's Serve applications that exist now."""
    try:
        status = serve.status()
    except Exception:  # Serve never started on this cluster
        return []
    return [name for name in (APP_NAME, RANKING_APP) if name in status.applications]


def nova_actors() -> list[str]:
    """Names of the detached actors in Nova's namespace."""
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == NAMESPACE
    )


def stop_nova(*, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Delete Nova's Serve applications and kill its actors, all at once, then wait until
    they are gone; returns what was stopped. The gateway's replicas take longest: they
    close their WebSockets first (`graceful_shutdown_timeout_s`)."""
    apps = running_applications()
    for app in apps:
        serve.delete(app, _blocking=False)
    names = nova_actors()
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:  # gone already
            continue
    deadline = time.monotonic() + timeout_s
    while running_applications() or set(names) & set(nova_actors()):
        if time.monotonic() > deadline:
            left = [*running_applications(), *sorted(set(names) & set(nova_actors()))]
            raise BackupError(f"Nova did not stop within {timeout_s:.0f} s: {', '.join(left)}")
        time.sleep(0.5)
    return [*(f"serve:{app}" for app in apps), *names]


def deploy_nova(settings: Settings) -> None:
    """Deploy everything again (`deployments.app.deploy`). Serve keeps the HTTP host and
    port it was started with; these are only used if it was not running."""
    deploy(settings, http_host=LOCALHOST, http_port=settings.http_port)
