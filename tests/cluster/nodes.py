"""A Ray cluster of three nodes on this machine (`ray.cluster_utils.Cluster`): a head and
two workers, all on 127.0.0.1, every port pinned under the scenario's port base, the
head's health checks tight enough that a node killed outright is noticed in seconds.

Which node an actor lives on comes from Ray's state API (`actor_nodes`).
"""

from __future__ import annotations

import time
from typing import Any

from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from deployments.stack import LOCALHOST, Layout, Ray
from deployments.stack.processes import private_dir, secret

WORKERS = 2
# The GCS declares a node dead after three missed checks 500 ms apart (about 1.5 s plus
# the timeouts) instead of Ray's default of about 16 s: an actor on a node killed outright
# comes back elsewhere in about 5 s.
HEALTH_CHECKS = {
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
# Each node's own ports are `port_base + 20 * index + offset`; its workers' a slice of
# `port_base + 4000 ... + 4899`, as the embedded head's are `+ 4000 ... + 4999`.
_NODE_PORTS = {
    "node_manager_port": 10,
    "object_manager_port": 11,
    "metrics_export_port": 12,
    "metrics_agent_port": 13,
    "dashboard_agent_listen_port": 14,
    "runtime_env_agent_port": 15,
}
_WORKER_PORTS_PER_NODE = 300


def node_args(layout: Layout, index: int) -> dict[str, Any]:
    """`Cluster.add_node` arguments for node `index` (0 is the head): loopback, its ports."""
    base = layout.port_base
    first_worker_port = base + 4000 + index * _WORKER_PORTS_PER_NODE
    args: dict[str, Any] = {
        "node_ip_address": LOCALHOST,
        # As a two-core node: also how many worker processes its raylet starts at once.
        "num_cpus": 2,
        "min_worker_port": first_worker_port,
        "max_worker_port": first_worker_port + _WORKER_PORTS_PER_NODE - 1,
        **{name: base + 20 * index + offset for name, offset in _NODE_PORTS.items()},
    }
    if index == 0:
        args.update(
            gcs_server_port=layout.ray_port,
            ray_client_server_port=base + 1,
            include_dashboard=True,
            dashboard_host=LOCALHOST,
            dashboard_port=layout.dashboard_port,
            _system_config=HEALTH_CHECKS,
        )
    return args


def start_cluster(layout: Layout) -> Cluster:
    """The head and `WORKERS` worker nodes, all registered. Ray's temp dir is RAY_TMPDIR
    (set by the caller): `temp_dir` in the node arguments crashes `Cluster`."""
    ray_files = Ray(layout)
    secret(ray_files.token_file)  # Ray's token auth needs the file before the head starts
    private_dir(ray_files.temp_dir)
    cluster = Cluster(initialize_head=True, head_node_args=node_args(layout, 0))
    for index in range(1, WORKERS + 1):
        cluster.add_node(**node_args(layout, index))
    cluster.wait_for_nodes(timeout=60)
    return cluster


def actor_nodes(names: list[str], namespace: str) -> dict[str, str]:
    """Node id of each named actor that is alive, by name (the dead and restarting are
    left out)."""
    alive = list_actors(
        filters=[("ray_namespace", "=", namespace), ("state", "=", "ALIVE")],
        limit=10_000,
        raise_on_missing_output=False,
    )
    wanted = set(names)
    return {a.name: a.node_id for a in alive if a.name in wanted and a.node_id}


def wait_for_actors(
    names: list[str], namespace: str, *, avoid: str, timeout_s: float
) -> dict[str, float]:
    """Poll until every named actor is alive on a node other than `avoid`; the seconds
    each took, from the call. Fails with what is still missing after `timeout_s`."""
    started = time.monotonic()
    back: dict[str, float] = {}
    while time.monotonic() - started < timeout_s:
        for name, node in actor_nodes(names, namespace).items():
            if node != avoid and name not in back:
                back[name] = round(time.monotonic() - started, 2)
        if len(back) == len(names):
            return back
        time.sleep(0.5)  # each look is a call to the dashboard: not a busy loop
    missing = sorted(set(names) - set(back))
    raise AssertionError(f"not back on another node after {timeout_s} s: {missing}")


def wait_for_death(node_id: str, *, timeout_s: float) -> float:
    """Seconds until the GCS declares the node dead (its health checks missed)."""
    import ray

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):  # type: ignore[no-untyped-call]
            return round(time.monotonic() - started, 2)
        time.sleep(0.05)
    raise AssertionError(f"node {node_id} still alive after {timeout_s} s")


def worker_holding_most(cluster: Cluster, placement: dict[str, str]) -> Any:
    """The worker node on which the most of `placement`'s actors live."""

    def held(node: Any) -> int:
        return sum(1 for node_id in placement.values() if node_id == node.node_id)

    return max(cluster.worker_nodes, key=held)


def shut_down(cluster: Cluster, *, timeout_s: float = 60) -> None:
    """Every node, the head last, within `timeout_s` in all (a node that will not stop
    gracefully is killed)."""
    import ray

    ray.shutdown()
    deadline = time.monotonic() + timeout_s
    for node in [*cluster.worker_nodes, cluster.head_node]:
        if node is None:
            continue
        graceful = time.monotonic() < deadline
        cluster.remove_node(node, allow_graceful=graceful)
