"""The home feed's GraphQL types: its modes, edges (with a ranked page's score and model
version), the connection (with why a RANKED page fell back), and live feed updates."""

from __future__ import annotations

import enum
import uuid

import strawberry

from gateway.schema.types import NovaInfo, PageInfo, Post, load_post, parse_id


@strawberry.enum
class FeedMode(enum.Enum):
    LATEST = strawberry.enum_value("LATEST", description="Newest first, from your timeline.")
    RANKED = strawberry.enum_value(
        "RANKED",
        description="Best first, by the model version your A/B bucket selects; each edge "
        "carries its score and modelVersion. Newest first (no score) if ranking is down.",
    )
    PULL = strawberry.enum_value(
        "PULL",
        description="Newest first, computed from PostgreSQL at read time (no timeline): "
        "slower; a fallback and the baseline the timeline path is measured against.",
    )


@strawberry.type
class FeedEdge:
    cursor: str
    node: Post
    score: float | None = strawberry.field(
        default=None, description="The ranking model's score (RANKED only), higher is better."
    )
    model_version: str | None = strawberry.field(
        default=None,
        description="The model version that ranked this page (RANKED only); send it back "
        "with trackEvents so impressions are attributed.",
    )


@strawberry.enum(description="Why a RANKED page came back newest first, without scores.")
class RankingFallback(enum.Enum):
    NO_ROUTE = strawberry.enum_value("NO_ROUTE", description="The model has no route.")
    FEATURES_UNAVAILABLE = strawberry.enum_value(
        "FEATURES_UNAVAILABLE", description="The FeatureStore failed or did not answer in time."
    )
    MODEL_UNAVAILABLE = strawberry.enum_value(
        "MODEL_UNAVAILABLE",
        description="The Ranker failed (the routed version's artifact did not load, or "
        "scoring raised) or did not answer in time.",
    )
    RANKING_OFF = strawberry.enum_value(
        "RANKING_OFF", description="This deployment runs no FeatureStore and Ranker."
    )


@strawberry.type
class FeedConnection:
    edges: list[FeedEdge]
    page_info: PageInfo
    ranking_fallback: RankingFallback | None = strawberry.field(
        default=None,
        description="Set when a RANKED page is served newest first instead: why. Its edges "
        "then carry no score and no modelVersion.",
    )

    @classmethod
    def of(
        cls,
        edges: list[FeedEdge],
        has_next_page: bool,
        *,
        ranking_fallback: RankingFallback | None = None,
    ) -> FeedConnection:
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next_page,
                end_cursor=edges[-1].cursor if edges else None,
                start_cursor=edges[0].cursor if edges else None,
            ),
            ranking_fallback=ranking_fallback,
        )


def keep_features(info: NovaInfo, viewer: uuid.UUID, posts: list[Post | None]) -> None:
    """Have the page's features kept for its impressions (`LatestPageFeatures`)."""
    keeper = info.context.runtime.latest_features
    if keeper is not None:
        keeper.after_page(viewer, [(p.record.id, p.record.author_id) for p in posts if p])


@strawberry.type
class FeedUpdate:
    post_id: strawberry.ID

    @strawberry.field(description="The new post; null if it is gone or hidden from you.")
    async def post(self, info: NovaInfo) -> Post | None:
        return await load_post(info, parse_id(self.post_id))
