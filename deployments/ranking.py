"""Serve deployments for ranking: `FeatureStore` (features from Redis), `Ranker` (models) and
`RankingService`, the `ranking` application's gRPC ingress over both.

The gateway calls them through deployment handles: `FeatureStore.features(viewer, posts,
authors)` returns the float32 matrix, `Ranker.score(matrix)` with
`multiplexed_model_id="name:version"` returns one score per row. The Ranker multiplexes
versions (`serve.multiplexed`): a replica loads a version on first use — artifact verified
against the registry's checksum — and keeps the most recently used few, so a route change
needs no redeploy.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from ray import serve
from ray.util import metrics
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from deployments.autoscaling import feature_store_replicas, ranker_replicas
from deployments.serve_patches import bind_grpc_servers_to_node_ip
from deployments.settings import Settings
from ranking.features import FeatureLookup
from ranking.models import ModelError, Scorer, load_model
from ranking.proto import nova_ranking_pb2 as pb
from ranking.registry import RouteTable, get_version, read_artifact
from ranking.report import LATENCY_KEY, LATENCY_SAMPLES, latency_sample
from ranking.schema import FINGERPRINT, NAMES
from storage.db import Database
from storage.logs import configure_logging
from storage.redis_client import make_redis
from storage.stalls import watch_process

log = logging.getLogger(__name__)

MODELS_PER_REPLICA = 8


@serve.deployment(
    name="FeatureStore",
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=1000,
    health_check_period_s=10,
)
class FeatureStore:
    """(viewer, posts) → feature matrix, one Redis round trip whatever the number of posts."""

    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc] # Serve awaits it
        bind_grpc_servers_to_node_ip()
        self._stalls = watch_process("feature-store", settings)
        self._redis = make_redis(settings)
        self._lookup = FeatureLookup(self._redis, half_life_s=settings.feature_half_life_s)
        self._latency = metrics.Histogram(
            "nova_feature_lookup_ms",
            "Feature matrix lookup time",
            boundaries=[0.5, 1, 2, 5, 10, 25, 50, 100],
        )

    async def features(
        self, viewer_id: str, post_ids: list[str], author_ids: list[str] | None = None
    ) -> np.ndarray:
        """Rows follow `post_ids`. With `author_ids` (each post's author) the lookup is one
        Redis round trip; without, two (the post records name the authors)."""
        started = time.perf_counter()
        matrix: np.ndarray = await self._lookup.matrix(viewer_id, post_ids, authors=author_ids)
        self._latency.observe((time.perf_counter() - started) * 1000)
        return matrix


@serve.deployment(
    name="Ranker",
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=200,
    health_check_period_s=10,
)
class Ranker:
    """Scores feature matrices with the model version named by the multiplexed model id."""

    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc] # Serve awaits it
        bind_grpc_servers_to_node_ip()
        self._stalls = watch_process("ranker", settings)
        self._settings = settings
        self._store = Path(settings.model_store)
        self._db = await Database.connect(
            settings.replace(pg_pool_min_size=0, pg_pool_max_size=2), application_name="nova-ranker"
        )
        self._redis = make_redis(settings)
        # Scoring latencies waiting to be flushed to Redis for `nova models report`.
        self._pending: dict[str, list[str]] = {}
        self._flusher: asyncio.Task[None] | None = None
        tags = ("model", "version")
        self._requests = metrics.Counter(
            "nova_ranker_requests_total", "Scoring calls per model version", tag_keys=tags
        )
        self._candidates = metrics.Counter(
            "nova_ranker_candidates_total", "Candidates scored per model version", tag_keys=tags
        )
        self._latency = metrics.Histogram(
            "nova_ranker_latency_ms",
            "Scoring time per call",
            boundaries=[0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50],
            tag_keys=tags,
        )
        self._scores = metrics.Histogram(
            "nova_ranker_score",
            "Distribution of scores given",
            boundaries=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            tag_keys=tags,
        )

    @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)  # type: ignore[untyped-decorator]
    async def get_model(self, model_id: str) -> Scorer:
        name, _, version = model_id.partition(":")
        record = await get_version(self._db, name, version)
        data = read_artifact(self._store, record)
        return load_model(data, record.format)

    async def score(self, matrix: np.ndarray) -> np.ndarray:
        model_id = serve.get_multiplexed_model_id()
        name, _, version = model_id.partition(":")
        try:
            model = await self.get_model(model_id)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{model_id}: cannot be loaded: {exc}") from exc
        started = time.perf_counter()
        scores: np.ndarray = model.score(matrix)
        elapsed_ms = (time.perf_counter() - started) * 1000
        tags = {"model": name, "version": version}
        self._requests.inc(1, tags=tags)
        self._candidates.inc(len(scores), tags=tags)
        self._latency.observe(elapsed_ms, tags=tags)
        if len(scores):
            self._scores.observe(float(np.median(scores)), tags=tags)
        self._pending.setdefault(LATENCY_KEY.format(name=name, version=version), []).append(
            latency_sample(elapsed_ms, time.time())
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_latencies())
        return scores

    async def _flush_latencies(self) -> None:
        """Once a second: append the latest samples, each with its time, to each version's
        capped Redis list."""
        while self._pending:
            await asyncio.sleep(1.0)
            pending, self._pending = self._pending, {}
            pipe = self._redis.pipeline(transaction=False)
            for key, samples in pending.items():
                pipe.lpush(key, *samples)
                pipe.ltrim(key, 0, LATENCY_SAMPLES - 1)
            try:
                await pipe.execute()
            except Exception as exc:  # samples for the report only; serving goes on
                log.warning("scoring latencies not recorded: %s", exc)

    async def check_health(self) -> None:
        await self._db.ping(self._settings.readiness_timeout_s * 5)


@serve.deployment(
    name="RankingService",
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=500,
    health_check_period_s=10,
)
class RankingService:
    """The `ranking` application's ingress: `Ranker.Rank` and `FeatureStore.GetFeatures`
    over Serve's gRPC ingress, for backends other than the gateway.

    Clients send the metadata `application: ranking` and `authorization: Bearer <token>`
    with `NOVA_GRPC_TOKEN`; a call without it is refused UNAUTHENTICATED (features say who
    liked whom). An empty model name means `NOVA_RANKING_MODEL`; an empty version means the
    one the viewer's A/B bucket selects. Over HTTP, the application's route answers 404.
    """

    async def __init__(  # type: ignore[misc] # Serve awaits it
        self, settings: Settings, features: Any, ranker: Any
    ) -> None:
        bind_grpc_servers_to_node_ip()
        configure_logging(settings.log_level)
        if not settings.grpc_token:
            log.error("NOVA_GRPC_TOKEN is unset: every gRPC call to the ranking app is refused")
        self._settings = settings
        self._features = features
        self._ranker = ranker
        self._db = await Database.connect(
            settings.replace(pg_pool_min_size=0, pg_pool_max_size=2),
            application_name="nova-ranking-service",
        )
        self._routes = RouteTable(self._db, refresh_s=settings.route_refresh_s)

    async def __call__(self, request: Request) -> Response:
        """Serve routes HTTP under the application's route prefix here: there is nothing."""
        return PlainTextResponse("Not Found", status_code=404)

    async def GetFeatures(
        self, request: pb.FeaturesRequest, grpc_context: Any = None
    ) -> pb.FeaturesResponse:
        if not _authenticated(grpc_context, self._settings.grpc_token):
            return _refuse(grpc_context, _NO_TOKEN, pb.FeaturesResponse(), "UNAUTHENTICATED")
        post_ids, author_ids = list(request.post_ids), list(request.author_ids)
        problem = _check_request(request.viewer_id, post_ids, author_ids)
        if problem:
            return _refuse(grpc_context, problem, pb.FeaturesResponse())
        matrix = await self._features.features.remote(
            request.viewer_id, post_ids, author_ids or None
        )
        matrix = np.asarray(matrix, dtype=np.float32)
        return pb.FeaturesResponse(
            feature_names=list(NAMES),
            rows=matrix.shape[0],
            columns=matrix.shape[1],
            values=matrix.ravel().tolist(),
            schema_fingerprint=FINGERPRINT,
        )

    async def Rank(self, request: pb.RankRequest, grpc_context: Any = None) -> pb.RankResponse:
        if not _authenticated(grpc_context, self._settings.grpc_token):
            return _refuse(grpc_context, _NO_TOKEN, pb.RankResponse(), "UNAUTHENTICATED")
        post_ids, author_ids = list(request.post_ids), list(request.author_ids)
        problem = _check_request(request.viewer_id, post_ids, author_ids)
        if problem:
            return _refuse(grpc_context, problem, pb.RankResponse())
        name = request.model_name or self._settings.ranking_model
        version = request.model_version or await self._routes.version_for(name, request.viewer_id)
        if not version:
            return _refuse(
                grpc_context,
                f"model {name} has no route and no version was given",
                pb.RankResponse(),
                code="NOT_FOUND",
            )
        matrix = await self._features.features.remote(
            request.viewer_id, post_ids, author_ids or None
        )
        try:
            scores = await self._ranker.options(
                multiplexed_model_id=f"{name}:{version}"
            ).score.remote(matrix)
        except Exception as exc:
            return _refuse(grpc_context, str(exc)[:500], pb.RankResponse(), code="UNAVAILABLE")
        order = np.argsort(-np.asarray(scores), kind="stable")
        return pb.RankResponse(
            posts=[pb.ScoredPost(post_id=post_ids[i], score=float(scores[i])) for i in order],
            model_name=name,
            model_version=version,
        )

    async def check_health(self) -> None:
        await self._db.ping(self._settings.readiness_timeout_s * 5)


MAX_RPC_POSTS = 2_000
_Reply = TypeVar("_Reply")
_NO_TOKEN = "send the metadata `authorization: Bearer <NOVA_GRPC_TOKEN>`"


def _authenticated(context: Any, token: str | None) -> bool:
    """Whether a gRPC caller presented the token. A call without a gRPC context came
    through a deployment handle, from inside the Ray cluster (which authenticates it)."""
    if context is None:
        return True
    if not token:
        return False
    presented = dict(context.invocation_metadata()).get("authorization", "")
    scheme, _, value = str(presented).partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def _check_request(viewer_id: str, post_ids: list[str], author_ids: list[str]) -> str | None:
    try:
        uuid.UUID(viewer_id)
        for one in (*post_ids, *author_ids):
            uuid.UUID(one)
    except ValueError:
        return "viewer_id, post_ids and author_ids must be UUIDs"
    if len(post_ids) > MAX_RPC_POSTS:
        return f"at most {MAX_RPC_POSTS} post_ids per call"
    if author_ids and len(author_ids) != len(post_ids):
        return f"author_ids must name one author per post id ({len(post_ids)}), or none"
    return None


def _refuse(context: Any, details: str, empty: _Reply, code: str = "INVALID_ARGUMENT") -> _Reply:
    """Answer with a gRPC status (Serve passes the context's code to the client)."""
    import grpc

    if context is not None:
        context.set_code(getattr(grpc.StatusCode, code))
        context.set_details(details)
    return empty


def build_ranking_app(settings: Settings) -> Any:
    """The `ranking` application: its gRPC ingress over the FeatureStore and the Ranker."""
    features = FeatureStore.options(  # type: ignore[attr-defined]
        **feature_store_replicas(settings)
    ).bind(settings)
    ranker = Ranker.options(**ranker_replicas(settings)).bind(settings)  # type: ignore[attr-defined]
    return RankingService.bind(settings, features, ranker)  # type: ignore[attr-defined]
