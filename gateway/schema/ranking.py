"""GraphQL for ranking: `trackEvents`, the client's report of what it showed and what the
user did with it (the ranked feed itself is `feed(mode: RANKED)` in `gateway.schema.social`)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence

import strawberry

from gateway.schema.types import NovaInfo, load_posts, parse_id
from gateway.services.analytics import ClientEvent


@strawberry.enum
class TrackedEventKind(enum.Enum):
    IMPRESSION = "IMPRESSION"
    VIEW = "VIEW"
    CLICK = "CLICK"
    DWELL = "DWELL"


@strawberry.input
class TrackedEventInput:
    kind: TrackedEventKind
    post_id: strawberry.ID
    model_version: str | None = strawberry.field(
        default=None, description="The edge's modelVersion, for ranked posts."
    )
    position: int | None = strawberry.field(default=None, description="0-based, in the feed.")
    dwell_ms: int | None = strawberry.field(default=None, description="Required for DWELL.")


@strawberry.type
class RankingMutation:
    @strawberry.mutation(
        description="Report impressions, views, clicks and dwell times (up to 100 per call); "
        "returns how many were accepted. They train and evaluate ranking models."
    )
    async def track_events(self, info: NovaInfo, events: list[TrackedEventInput]) -> int:
        claims = info.context.require_user()
        parsed = [
            ClientEvent(
                kind=event.kind.value,
                post_id=parse_id(event.post_id, "postId"),
                model_version=event.model_version,
                position=event.position,
                dwell_ms=event.dwell_ms,
            )
            for event in events
        ]

        async def visible(post_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
            """Of these posts, those the caller may see (live, not behind a block)."""
            posts = await load_posts(info, list(post_ids))
            return {p.record.id: p.record.author_id for p in posts if p is not None}

        return await info.context.runtime.analytics.track(claims.user_id, parsed, visible)
