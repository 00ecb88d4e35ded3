"""The Serve application and everything `nova up` / `nova deploy` put on a Ray cluster.

`deploy()` prepares storage (migrations, topic catalogue, Kafka topics), starts Serve's
HTTP proxy on the configured host and port, runs the gateway application, and starts the
relays, consumers and shards. Every step is idempotent, so deploying twice is harmless.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.config import gRPCOptions
from starlette.types import ASGIApp

from actors.consumers import PRODUCTION_CONSUMERS
from deployments.autoscaling import gateway_replicas
from deployments.jobs import (
    DATA_EXPORT,
    NOTIFICATION_DIGEST,
    ensure_data_export,
    ensure_notification_digest,
)
from deployments.ranking import build_ranking_app
from deployments.serve_patches import before_graceful_shutdown, bind_grpc_servers_to_node_ip
from deployments.settings import Settings
from deployments.workers import (
    MEDIA_PROCESSOR,
    consumer_member_name,
    ensure_consumer,
    ensure_media_processor,
    replace_relays,
    replace_shards,
    stop_worker,
)
from gateway.app import GatewayRuntime, create_app
from ranking.starter import ensure_starter
from storage.db import Database
from storage.kafka.clients import TopicAdmin
from storage.kafka.topics import registered_topics, sync_catalogue
from storage.logs import configure_logging
from storage.migrate import migrate
from storage.stalls import StallWatch
from storage.tracing import export_spans

log = logging.getLogger(__name__)

APP_NAME = "nova"
# FeatureStore, Ranker and their gRPC ingress. gRPC clients send `application: ranking`.
RANKING_APP = "ranking"
RANKING_ROUTE = "/_ranking"  # Serve routes gRPC only to applications with a route prefix
# The gateway's collector thresholds (Python's are 700, 10, 10). Every open WebSocket keeps
# a few hundred objects alive, and they pile into the oldest generation, which each full
# collection walks whole: with 2,000 chat subscribers, collection took 17% of the replica's
# time (py-spy, native frames) and its pauses were the delivery latency's tail. Young
# garbage is collected every 10,000 allocations instead of 700, and the oldest generation
# is looked at 10 times less often. What start-up built is already out of its reach: Serve
# freezes a replica's heap after its constructor (`RAY_SERVE_FREEZE_GC_ON_STARTUP`).
GATEWAY_GC_THRESHOLDS = (10_000, 10, 100)
# How long a stopping gateway replica spends sending close frames; Serve then waits for
# the closed sockets' handlers, within graceful_shutdown_timeout_s (10 s) as before.
DRAIN_TIMEOUT_S = 5.0
GRPC_SERVICERS = [
    "ranking.proto.nova_ranking_pb2_grpc.add_RankerServicer_to_server",
    "ranking.proto.nova_ranking_pb2_grpc.add_FeatureStoreServicer_to_server",
]


@serve.deployment(
    name="Gateway",
    ray_actor_options={"num_cpus": 0},
    health_check_period_s=5,
    health_check_timeout_s=10,
    max_ongoing_requests=200,
    graceful_shutdown_timeout_s=10,
)
@serve.ingress()
class Gateway:
    """The GraphQL ingress: HTTP and WebSocket on `/graphql`, plus health endpoints."""

    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc] # Serve awaits it
        bind_grpc_servers_to_node_ip()
        configure_logging(settings.log_level)
        # The ranking application's deployments, by name: it is deployed (and redeployed)
        # on its own; until it answers, `feed(mode: RANKED)` serves newest first.
        self._runtime = await GatewayRuntime.start(
            settings,
            features=serve.get_deployment_handle("FeatureStore", app_name=RANKING_APP),
            ranker=serve.get_deployment_handle("Ranker", app_name=RANKING_APP),
        )
        export_spans(settings, service="nova-gateway", instance=self._runtime.replica_id)
        gc.set_threshold(*GATEWAY_GC_THRESHOLDS)
        self._stalls = StallWatch("gateway", warn_ms=settings.stall_warn_ms).start()
        # Close WebSockets with 1012 as soon as Serve starts stopping this replica, instead
        # of holding them until graceful_shutdown_timeout_s runs out (`gateway.transport.drain`).
        before_graceful_shutdown(self._runtime.websockets.drain, timeout_s=DRAIN_TIMEOUT_S)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return create_app(self._runtime)

    async def check_health(self) -> None:
        # Serve replaces a replica whose health check raises.
        if self._runtime.closed:
            raise RuntimeError("gateway runtime is closed")
        await self._runtime.db.ping(self._runtime.settings.readiness_timeout_s * 5)


def build_app(settings: Settings) -> Any:
    return Gateway.options(  # type: ignore[attr-defined] # added by @serve.deployment
        # A fixed count, or autoscaling by requests in flight (`deployments.autoscaling`).
        **gateway_replicas(settings),
        # Every open WebSocket is an ongoing request to Serve; at the old 200, subscriber
        # 201 on a replica waited in the proxy's queue for a slot that never freed.
        max_ongoing_requests=settings.gateway_max_ongoing_requests,
        # Bounded: past it the proxy answers 503 with Retry-After instead of queueing.
        max_queued_requests=settings.gateway_max_queued_requests,
        logging_config={"enable_access_log": settings.gateway_access_log},
    ).bind(settings)


async def prepare_storage(settings: Settings) -> dict[str, int]:
    """Apply migrations, record the topic catalogue, create the topics in Kafka, and
    register and route the starter ranking model where the model has no route.

    Returns topics whose partition count in Kafka differs from the catalogue.
    """
    db = await Database.connect(settings, application_name="nova-deploy")
    try:
        conn = await db.connect_raw()
        try:
            applied = await migrate(conn)
            if applied:
                log.info("applied migrations %s", applied)
            async with conn.transaction():
                await sync_catalogue(conn, max_partitions=settings.kafka_max_partitions)
            topics = await registered_topics(conn)
        finally:
            await conn.close()
        await ensure_starter(db, Path(settings.model_store), settings.ranking_model)
    finally:
        await db.close()
    admin = TopicAdmin(settings)
    try:
        return await admin.ensure(topics)
    finally:
        await admin.close()


def deploy(settings: Settings, *, http_host: str, http_port: int) -> dict[str, int]:
    """Deploy everything to the Ray cluster this driver is connected to."""
    mismatched = asyncio.run(prepare_storage(settings))
    # Shards first: the gateway routes likes and count reads to them. They are replaced, one
    # at a time, so they run the deployed code (each rebuilds its keys from PostgreSQL on
    # first use); any beyond a lowered NOVA_COUNTER_SHARDS stop.
    replace_shards(settings)
    # gRPC options apply when Serve first starts on a cluster (later starts keep them).
    grpc_options = (
        gRPCOptions(port=settings.grpc_port, grpc_servicer_functions=GRPC_SERVICERS)
        if settings.grpc_port
        else None
    )
    serve.start(http_options={"host": http_host, "port": http_port}, grpc_options=grpc_options)
    serve.run(
        build_ranking_app(settings), name=RANKING_APP, route_prefix=RANKING_ROUTE, blocking=False
    )
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)
    replace_relays(settings)
    stop_worker(MEDIA_PROCESSOR)
    ensure_media_processor(settings)
    stop_worker(DATA_EXPORT)
    ensure_data_export(settings)
    stop_worker(NOTIFICATION_DIGEST)
    ensure_notification_digest(settings)
    for consumer in PRODUCTION_CONSUMERS:
        stop_worker(consumer_member_name(consumer, 0))
        ensure_consumer(settings, consumer)
    return mismatched
