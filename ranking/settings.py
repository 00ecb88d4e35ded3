"""Ranking's settings: where models live, which one ranks the home feed, candidates, and
how online features age. Extends the storage layer's (`storage.settings`)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.settings import Bounds, StorageSettings, setting


@dataclass(frozen=True)
class RankingSettings(StorageSettings):
    """Model artifacts live in `model_store`; `ranking_model` is the model whose route
    serves `feed(mode: RANKED)`. Candidates: the newest `ranking_in_network` timeline
    entries plus up to `ranking_out_of_network` posts liked by followees or trending."""

    model_store: str = setting(
        "/var/lib/nova/models",
        "where model artifacts are kept; every Ranker replica must read it (a shared volume "
        "on a cluster; `<state dir>/models` on the embedded stack)",
    )
    ranking_model: str = setting("home", "the model whose route ranks `feed(mode: RANKED)`")
    route_refresh_s: float = setting(0.5, "how often gateways and Rankers re-read model routes")
    ranking_in_network: int = setting(300, "timeline entries a ranked page is chosen from")
    ranking_out_of_network: int = setting(
        100, "posts liked by followees or trending added as candidates"
    )
    ranking_session_ttl_s: int = setting(1_800, "how long a ranked list is kept for paging")
    ranking_call_timeout_s: float = setting(2.0, "bound on a FeatureStore or Ranker call")
    ranking_latest_feature_sample: float = setting(
        0.25,
        "share of LATEST feed pages whose posts get their features looked up and kept, so "
        "their impressions are logged with them (training data; ranked pages always are); "
        "1 keeps every page's at about twice a LATEST page's CPU, 0 none",
        Bounds(ge=0, le=1),
    )
    grpc_token: str | None = setting(
        None,
        "the secret callers of the gRPC ingress (`Ranker.Rank`, `FeatureStore.GetFeatures`) "
        "present as the metadata `authorization: Bearer <token>`; others are refused "
        "UNAUTHENTICATED, and every call is while it is unset (set it on a cluster; the "
        "embedded stack generates one into its state dir)",
    )
    feature_half_life_s: float = setting(
        86_400.0, "engagement counts in the online features halve this often"
    )
    feature_post_ttl_s: int = setting(
        14 * 24 * 3600, "a post's online features expire this long after their last update"
    )
    feature_affinity_ttl_s: int = setting(
        60 * 24 * 3600, "a viewer's affinities expire this long after their last update"
    )
