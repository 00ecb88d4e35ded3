"""The scenario's body (`tests.cluster.scenario` sets the environment first): start the
cluster and the stack, deploy Nova onto them, lose a node under load, burst, and stop
everything, each step bounded."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import ray
from ray import serve
from ray.cluster_utils import Cluster

from actors.remote import NAMESPACE
from deployments.app import deploy
from deployments.settings import Settings
from deployments.stack import LOCALHOST, Layout, Ray, Stack
from storage.db import Database
from tests.cluster.burst import burst_and_calm, controller_decisions, running_replicas
from tests.cluster.node_loss import lose_a_node, shard_names
from tests.cluster.nodes import actor_nodes, shut_down, start_cluster
from tests.support.social import make_members

READY_TIMEOUT_S = 240.0
GATEWAY_MOST = 3
RANKING_MOST = 2


def scenario_settings(settings: Settings, layout: Layout) -> Settings:
    """What Nova runs with here: two shards of each kind (six over three nodes), the
    gateway autoscaled 1..3 and the ranking deployments 1..2 with short delays and a
    short window so a burst of a minute shows them, and no rate limits (every request
    comes from 127.0.0.1)."""
    return settings.replace(
        http_port=layout.http_port,
        grpc_port=0,
        counter_shards=2,
        timeline_shards=2,
        chat_shards=2,
        gateway_replicas=1,
        gateway_max_replicas=GATEWAY_MOST,
        gateway_target_ongoing_requests=8.0,
        ranker_max_replicas=RANKING_MOST,
        ranker_target_ongoing_requests=1.0,
        feature_store_max_replicas=RANKING_MOST,
        feature_store_target_ongoing_requests=1.0,
        autoscale_upscale_delay_s=2.0,
        autoscale_downscale_delay_s=10.0,
        autoscale_look_back_s=5.0,
        rate_limits_enabled=False,
    )


def run(layout: Layout) -> dict[str, Any]:
    results: dict[str, Any] = {}
    cluster: Cluster | None = None
    stack: Stack | None = None
    try:
        began = time.monotonic()
        cluster = start_cluster(layout)
        results["cluster_start_s"] = round(time.monotonic() - began, 1)
        stack = Stack(layout, environ={**os.environ, "RAY_ADDRESS": cluster.address})
        env = stack.up()
        results["stack_start_s"] = round(time.monotonic() - began, 1)
        settings = scenario_settings(Settings.from_env(env), layout)
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        serve.start(
            proxy_location="HeadOnly", http_options={"host": LOCALHOST, "port": layout.http_port}
        )
        deploy(settings, http_host=LOCALHOST, http_port=layout.http_port)
        http_url = f"http://{LOCALHOST}:{layout.http_port}"
        _wait_until_ready(http_url)
        results["deployed_s"] = round(time.monotonic() - began, 1)
        results["replicas_deployed"] = running_replicas()
        results["nodes"] = 1 + len(cluster.worker_nodes)
        results.update(asyncio.run(_scenario(cluster, settings, http_url)))
        results["autoscaling"]["decisions"] = controller_decisions(Ray(layout).temp_dir)
    finally:
        if cluster is not None:
            shut_down(cluster)
        if stack is not None:
            stack.down()
    return results


async def _scenario(cluster: Cluster, settings: Settings, http_url: str) -> dict[str, Any]:
    db = await Database.connect(settings, application_name="nova-multinode")
    try:
        placement = await asyncio.to_thread(actor_nodes, shard_names(settings), NAMESPACE)
        node_loss = await lose_a_node(cluster, settings, db, http_url)
        members = await make_members(db, settings, 8, prefix="burst")
        autoscaling = await burst_and_calm(http_url, members, GATEWAY_MOST)
    finally:
        await db.close()
    return {
        "shard_nodes": len(set(placement.values())),
        "node_loss": node_loss,
        "autoscaling": autoscaling,
    }


def _wait_until_ready(http_url: str) -> None:
    """`/readyz` answers 200 through HAProxy and every Serve application is RUNNING."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen = ""
    while time.monotonic() < deadline:
        apps = serve.status().applications
        statuses = {name: str(getattr(a.status, "value", a.status)) for name, a in apps.items()}
        try:
            readyz: int | str = httpx.get(f"{http_url}/readyz", timeout=5).status_code
        except httpx.HTTPError as exc:
            readyz = str(exc)
        if readyz == 200 and statuses and all(s == "RUNNING" for s in statuses.values()):
            return
        seen = f"/readyz: {readyz}; applications: {statuses}"
        time.sleep(1.0)
    raise TimeoutError(f"Nova not ready on the cluster after {READY_TIMEOUT_S} s ({seen})")
