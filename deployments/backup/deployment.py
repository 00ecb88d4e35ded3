"""Nova's deployment on Ray, stopped before a restore and deployed again after it.

Nothing of Nova may run while its database is replaced: relays and consumers would write to
tables being dropped, shards and gateway replicas would keep the old stack's state in
memory (its signing key, counts, timelines). So a restore stops both Serve applications and
every named actor in Nova's namespace (shards, relays, consumers, the media processor and
the jobs), and `deploy` starts them all again on the restored data. Serve itself, its HTTP
and gRPC options, and Ray stay up. The caller has connected to Ray.
"""

from __future__ import annotations

import ray
from ray import serve

from deployments.app import APP_NAME, RANKING_APP, deploy
from deployments.settings import Settings
from deployments.stack import LOCALHOST
from deployments.workers import NAMESPACE, stop_worker


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


def stop_nova() -> list[str]:
    """Delete Nova's Serve applications (gateway first: it stops taking requests) and
    stop its actors; returns what was stopped."""
    stopped = []
    for app in running_applications():
        serve.delete(app)
        stopped.append(f"serve:{app}")
    for name in nova_actors():
        stop_worker(name)
        stopped.append(name)
    return stopped


def deploy_nova(settings: Settings) -> None:
    """Deploy everything again (`deployments.app.deploy`). Serve keeps the HTTP host and
    port it was started with; these are only used if it was not running."""
    deploy(settings, http_host=LOCALHOST, http_port=settings.http_port)
