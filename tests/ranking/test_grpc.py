"""Ranker.Rank and FeatureStore.GetFeatures through Serve's gRPC ingress, with grpcio."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from deployments.settings import Settings
from ranking.proto import nova_ranking_pb2 as pb
from ranking.proto import nova_ranking_pb2_grpc as pbg
from ranking.schema import FINGERPRINT, NAMES
from storage.db import Database
from tests.conftest import wait_until
from tests.support.ranking import (
    FEATURES_WAIT_S,
    WAIT_S,
    add_model,
    followed_posts,
    label,
    serve_only,
)

pytestmark = pytest.mark.stack

APPLICATION = ("application", "ranking")


def _metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    """What a caller of the ranking application sends: its name and the gRPC token."""
    assert settings.grpc_token, "the stack provides NOVA_GRPC_TOKEN"
    return (APPLICATION, ("authorization", f"Bearer {settings.grpc_token}"))


async def test_rank_and_get_features_over_grpc(
    http_url: str, db: Database, deployed: Settings, tmp_path: Path
) -> None:
    texts = ["tiny", "a much longer post than the first"]
    viewer, authors, posts = await followed_posts(db, deployed, http_url, texts)
    ids = [p["id"] for p in posts]
    author_ids = [a.id for a in authors]
    version = label("grpc")
    await add_model(db, deployed, tmp_path, version, post_text_length=0.05)
    await serve_only(db, deployed, version)
    metadata = _metadata(deployed)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{deployed.grpc_port}")
    try:
        features = pbg.FeatureStoreStub(channel)  # type: ignore[no-untyped-call]  # generated

        async def lengths_arrived() -> pb.FeaturesResponse | None:
            reply = await features.GetFeatures(
                pb.FeaturesRequest(viewer_id=viewer.id, post_ids=ids), metadata=metadata, timeout=10
            )
            column = list(reply.feature_names).index("post_text_length")
            values = [reply.values[row * reply.columns + column] for row in range(reply.rows)]
            return reply if values == [len(t) for t in texts] else None

        reply = await wait_until(
            lengths_arrived, timeout_s=FEATURES_WAIT_S, message="features over gRPC"
        )
        assert list(reply.feature_names) == list(NAMES)
        assert (reply.rows, reply.columns) == (2, len(NAMES))
        assert reply.schema_fingerprint == FINGERPRINT
        # Naming each post's author reads the same rows (in one Redis round trip).
        named = await features.GetFeatures(
            pb.FeaturesRequest(viewer_id=viewer.id, post_ids=ids, author_ids=author_ids),
            metadata=metadata,
            timeout=10,
        )
        age = list(NAMES).index("post_age_hours")  # the one feature that moves with time
        assert [v for i, v in enumerate(named.values) if i % len(NAMES) != age] == [
            v for i, v in enumerate(reply.values) if i % len(NAMES) != age
        ]
        with pytest.raises(grpc.aio.AioRpcError) as mismatched:
            await features.GetFeatures(
                pb.FeaturesRequest(viewer_id=viewer.id, post_ids=ids, author_ids=author_ids[:1]),
                metadata=metadata,
                timeout=10,
            )
        assert mismatched.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        ranker = pbg.RankerStub(channel)  # type: ignore[no-untyped-call]  # generated

        async def ranked_by_the_new_route() -> pb.RankResponse | None:
            reply = await ranker.Rank(
                pb.RankRequest(viewer_id=viewer.id, post_ids=ids, author_ids=author_ids),
                metadata=metadata,
                timeout=10,
            )
            return reply if reply.model_version == version else None

        # The route reaches every Ranker replica's route table within `route_refresh_s`.
        ranked = await wait_until(ranked_by_the_new_route, timeout_s=WAIT_S, message="the route")
        assert (ranked.model_name, ranked.model_version) == (deployed.ranking_model, version)
        assert [p.post_id for p in ranked.posts] == [ids[1], ids[0]]  # longer text first
        assert ranked.posts[0].score > ranked.posts[1].score

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ranker.Rank(pb.RankRequest(viewer_id="nobody"), metadata=metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await ranker.Rank(
                pb.RankRequest(viewer_id=viewer.id, post_ids=ids, model_name="no-such-model"),
                metadata=metadata,
                timeout=10,
            )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()


async def test_callers_without_the_token_are_unauthenticated(
    http_url: str, db: Database, deployed: Settings
) -> None:
    viewer, _, posts = await followed_posts(db, deployed, http_url, ["who liked whom"])
    ids = [p["id"] for p in posts]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{deployed.grpc_port}")
    try:
        features = pbg.FeatureStoreStub(channel)  # type: ignore[no-untyped-call]  # generated
        ranker = pbg.RankerStub(channel)  # type: ignore[no-untyped-call]  # generated
        wrong = "x" * len(deployed.grpc_token or "")
        for metadata in (
            (APPLICATION,),
            (APPLICATION, ("authorization", f"Bearer {wrong}")),
            (APPLICATION, ("authorization", str(deployed.grpc_token))),  # no scheme
        ):
            with pytest.raises(grpc.aio.AioRpcError) as features_refused:
                await features.GetFeatures(
                    pb.FeaturesRequest(viewer_id=viewer.id, post_ids=ids),
                    metadata=metadata,
                    timeout=10,
                )
            assert features_refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
            with pytest.raises(grpc.aio.AioRpcError) as rank_refused:
                await ranker.Rank(
                    pb.RankRequest(viewer_id=viewer.id, post_ids=ids), metadata=metadata, timeout=10
                )
            assert rank_refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
    finally:
        await channel.close()


async def test_the_ranking_application_answers_http_with_404(http_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for method, path in (
            ("GET", "/_ranking"),
            ("GET", "/_ranking/"),
            ("POST", "/_ranking/nova.ranking.v1.Ranker/Rank"),
        ):
            response = await client.request(method, f"{http_url}{path}")
            assert response.status_code == 404, (method, path, response.status_code)
