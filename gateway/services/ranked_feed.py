"""`feed(mode: RANKED)`: candidates → FeatureStore → Ranker → author diversity → pages.

The first page builds a ranking session: in-network candidates (the home timeline and
followed celebrities), out-of-network ones (posts followees liked lately, posts trending
today, minus those the viewer has seen), deduplicated and filtered for blocks; one feature
lookup for all of them; one scoring call to the version the viewer's A/B bucket selects;
no author more than twice in a row; posts already seen (reported by `trackEvents`) after
all unseen ones. The ranked list is kept in Redis for `ranking_session_ttl_s`, and cursors point
into it, so paging is stable while new posts and likes arrive. Each page also records the
features served per post (`nova:served:<viewer>:<post>`) for impression logging.

When no route exists for the model name, or the FeatureStore or Ranker fail or time out,
the page is newest-first with no score and no model version, and says why (`fallback`,
counted by `nova_ranked_feed_fallbacks_total`): the feed degrades, it does not fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from ray.util import metrics

from gateway.services.feed import Feed
from gateway.services.profiles import page_size
from gateway.settings import GatewaySettings
from ranking.diversity import final_order
from ranking.registry import RouteTable
from ranking.schema import DTYPE, NAMES
from storage.db import Database
from storage.errors import InvalidInput, classify
from storage.repositories.candidates import CandidateStore
from storage.repositories.timelines import Entry
from storage.tasks import SingleFlight

log = logging.getLogger(__name__)

SESSION = "nova:rank:"
SERVED = "nova:served:"
SERVED_TTL_S = 24 * 3600
SEEN = "nova:seen:"
SEEN_TTL_S = 3 * 24 * 3600
# Why a ranked page is served newest first (`RankedPage.fallback`).
NO_ROUTE = "NO_ROUTE"
FEATURES_UNAVAILABLE = "FEATURES_UNAVAILABLE"
MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
_TRENDING_TTL_S = 30.0
_LIKED_WINDOW = timedelta(days=2)
_TRENDING_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class RankedItem:
    cursor: str
    post_id: uuid.UUID
    score: float | None
    model_version: str | None


@dataclass(frozen=True)
class RankedPage:
    items: list[RankedItem]
    has_next_page: bool
    fallback: str | None  # why the page is newest first: NO_ROUTE, FEATURES_/MODEL_UNAVAILABLE


@dataclass
class Ranking:
    """One viewer's ranked list, as stored for paging."""

    post_ids: list[str]
    scores: list[float] | None
    model_name: str | None
    model_version: str | None
    features: np.ndarray | None  # rows follow post_ids
    fallback: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "p": self.post_ids,
                "s": self.scores,
                "m": self.model_name,
                "v": self.model_version,
                "f": None
                if self.features is None
                else base64.b64encode(self.features.astype(DTYPE).tobytes()).decode(),
                "x": self.fallback,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Ranking:
        data = json.loads(raw)
        features = None
        if data["f"] is not None:
            flat = np.frombuffer(base64.b64decode(data["f"]), dtype=DTYPE)
            features = flat.reshape(len(data["p"]), len(NAMES))
        return cls(data["p"], data["s"], data["m"], data["v"], features, data.get("x"))


def keep_served(
    pipe: Any,
    viewer: uuid.UUID,
    post_id: str,
    row: np.ndarray,
    model_name: str | None = None,
    model_version: str | None = None,
) -> None:
    """Queue the record of the features a post was served with, which `trackEvents`
    attaches to its impression (`gateway.services.analytics`)."""
    record = {"m": model_name, "v": model_version, "f": [float(x) for x in row]}
    pipe.set(f"{SERVED}{viewer}:{post_id}", json.dumps(record), ex=SERVED_TTL_S)


def _unseen_first(post_ids: list[str], seen: set[str]) -> list[str]:
    return [p for p in post_ids if p not in seen] + [p for p in post_ids if p in seen]


def encode_cursor(session: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"r1|{session}|{offset}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        tag, session, offset = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        if tag != "r1" or not session.isalnum() or int(offset) < 0:
            raise ValueError(cursor)
        return session, int(offset)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("after is not a valid ranked feed cursor") from exc


class RankedFeed:
    def __init__(
        self,
        db: Database,
        redis: aioredis.Redis,
        feed: Feed,
        settings: GatewaySettings,
        *,
        features: Any,
        ranker: Any,
    ) -> None:
        self._candidates = CandidateStore(db)
        self._redis = redis
        self._feed = feed
        self._settings = settings
        self._features = features  # DeploymentHandle to FeatureStore
        self._ranker = ranker  # DeploymentHandle to Ranker
        self.routes = RouteTable(db, refresh_s=settings.route_refresh_s)
        self._trending: tuple[float, list[Entry]] = (-1e9, [])
        self._trending_load = SingleFlight(self._load_trending)
        self._stages = metrics.Histogram(
            "nova_ranked_feed_stage_ms",
            "Time per stage of a ranked first page: candidates, features, scoring, order, store",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 250],
            tag_keys=("stage",),
        )
        self._fallbacks = metrics.Counter(
            "nova_ranked_feed_fallbacks_total",
            "Ranked pages served newest first instead, by reason",
            tag_keys=("reason",),
        )

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._stages.observe((time.perf_counter() - started) * 1000, tags={"stage": name})

    async def page(self, viewer: uuid.UUID, first: int | None, after: str | None) -> RankedPage:
        limit = page_size(first)
        if after:
            session, offset = decode_cursor(after)
            ranking = await self._load(viewer, session)
        else:
            session, offset = secrets.token_hex(8), 0
            ranking = await self.rank(viewer)
        end = min(offset + limit, len(ranking.post_ids))
        items = [
            RankedItem(
                cursor=encode_cursor(session, index + 1),
                post_id=uuid.UUID(ranking.post_ids[index]),
                score=None if ranking.scores is None else ranking.scores[index],
                model_version=ranking.model_version,
            )
            for index in range(offset, end)
        ]
        with self._stage("store"):
            await self._store(viewer, ranking, offset, end, session=None if after else session)
        return RankedPage(items, end < len(ranking.post_ids), ranking.fallback)

    async def rank(self, viewer: uuid.UUID) -> Ranking:
        """Rank the viewer's candidates now (no session). Posts the viewer has already
        seen come after every unseen one."""
        with self._stage("candidates"):
            candidates, seen = await self.candidates(viewer)
        post_ids = [str(c.post_id) for c in candidates]
        authors = [c.author_id for c in candidates]
        name = self._settings.ranking_model
        version = await self.routes.version_for(name, str(viewer))
        if not candidates:
            return Ranking([], None, None, None, None)
        if version is None:
            return self._fallback(post_ids, seen, NO_ROUTE)
        timeout_s = self._settings.ranking_call_timeout_s
        try:
            with self._stage("features"):
                matrix = await asyncio.wait_for(
                    self._features.features.remote(
                        str(viewer), post_ids, [str(a) for a in authors]
                    ),
                    timeout_s,
                )
        except Exception as exc:  # degrade to newest-first; the reason goes to the log
            log.warning("ranked feed for %s: features failed: %s", viewer, classify(exc))
            return self._fallback(post_ids, seen, FEATURES_UNAVAILABLE)
        try:
            with self._stage("scoring"):
                scores = await asyncio.wait_for(
                    self._ranker.options(multiplexed_model_id=f"{name}:{version}").score.remote(
                        matrix
                    ),
                    timeout_s,
                )
        except Exception as exc:
            log.warning(
                "ranked feed for %s: %s %s failed: %s", viewer, name, version, classify(exc)
            )
            return self._fallback(post_ids, seen, MODEL_UNAVAILABLE)
        with self._stage("order"):
            scores = np.asarray(scores, dtype=DTYPE)
            order = final_order(scores.tolist(), authors, [post in seen for post in post_ids])
        return Ranking(
            post_ids=[post_ids[i] for i in order],
            scores=[round(float(scores[i]), 6) for i in order],
            model_name=name,
            model_version=version,
            features=matrix[np.array(order, dtype=np.int64)],
        )

    def _fallback(self, post_ids: list[str], seen: set[str], reason: str) -> Ranking:
        self._fallbacks.inc(tags={"reason": reason})
        return Ranking(_unseen_first(post_ids, seen), None, None, None, None, reason)

    async def candidates(self, viewer: uuid.UUID) -> tuple[list[Entry], set[str]]:
        """In-network first, then out-of-network; each post once; blocks filtered; also
        which of them the viewer has seen. Seen out-of-network posts are dropped."""
        settings = self._settings
        now = datetime.now(UTC)
        in_network, liked, popular = await asyncio.gather(
            self._feed.candidates(viewer, settings.ranking_in_network),
            self._liked(viewer, now),
            self._popular(),
        )
        known = {e.post_id for e in in_network}
        outside = [
            e for e in (*liked, *popular) if e.post_id not in known and e.author_id != viewer
        ]
        outside = list({e.post_id: e for e in outside}.values())
        # Both filters at once: one round trip's time instead of two.
        seen, hidden = await asyncio.gather(
            self._seen(viewer, [*in_network, *outside]),
            self._hidden(viewer, list({e.author_id for e in outside})),
        )
        outside = [e for e in outside if str(e.post_id) not in seen and e.author_id not in hidden]
        return [*in_network, *outside[: settings.ranking_out_of_network]], seen

    async def _hidden(self, viewer: uuid.UUID, authors: list[uuid.UUID]) -> set[uuid.UUID]:
        """Of `authors`, those blocked by the viewer or blocking the viewer."""
        if not authors:
            return set()
        return await self._candidates.hidden_authors(viewer, authors)

    async def _seen(self, viewer: uuid.UUID, entries: list[Entry]) -> set[str]:
        """Which of `entries` the viewer reported seeing (`trackEvents`); one round trip."""
        if not entries:
            return set()
        ids = [str(e.post_id) for e in entries]
        try:
            flags = await self._redis.smismember(f"{SEEN}{viewer}", ids)
        except Exception as exc:  # without the filter the feed still works
            log.warning("seen posts unavailable: %s", classify(exc, "redis"))
            return set()
        return {post for post, flag in zip(ids, flags, strict=True) if flag}

    async def _liked(self, viewer: uuid.UUID, now: datetime) -> list[Entry]:
        return await self._candidates.liked_by_followees(
            viewer, since=now - _LIKED_WINDOW, limit=self._settings.ranking_out_of_network
        )

    async def _popular(self) -> list[Entry]:
        """Trending posts, shared by every viewer of this replica for `_TRENDING_TTL_S`.
        When they expire, the requests that find them so wait for one query, not one each."""
        loaded_at, entries = self._trending
        if time.monotonic() - loaded_at < _TRENDING_TTL_S:
            return entries
        return await self._trending_load()

    async def _load_trending(self) -> list[Entry]:
        since = datetime.now(UTC) - _TRENDING_WINDOW
        entries = await self._candidates.trending(
            since=since, limit=self._settings.ranking_out_of_network
        )
        self._trending = (time.monotonic(), entries)
        return entries

    async def _load(self, viewer: uuid.UUID, session: str) -> Ranking:
        try:
            raw = await self._redis.get(f"{SESSION}{viewer}:{session}")
        except Exception as exc:
            raise classify(exc, "redis") from exc
        if raw is None:
            raise InvalidInput("this ranked feed cursor has expired; request the first page again")
        return Ranking.from_json(raw)

    async def _store(
        self, viewer: uuid.UUID, ranking: Ranking, start: int, end: int, *, session: str | None
    ) -> None:
        """One round trip: save a new ranking session (paging needs it: failure raises),
        and keep the features served with each post of the page for impression logging
        (a bonus: failure is logged)."""
        pipe = self._redis.pipeline(transaction=False)
        if session is not None:
            pipe.set(
                f"{SESSION}{viewer}:{session}",
                ranking.to_json(),
                ex=self._settings.ranking_session_ttl_s,
            )
        if ranking.features is not None:
            for index in range(start, end):
                keep_served(
                    pipe,
                    viewer,
                    ranking.post_ids[index],
                    ranking.features[index],
                    ranking.model_name,
                    ranking.model_version,
                )
        if not len(pipe):
            return
        try:
            await pipe.execute()
        except Exception as exc:
            error = classify(exc, "redis")
            if session is not None:
                raise error from exc
            log.warning("served features not recorded: %s", error)
