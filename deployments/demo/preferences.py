"""The hidden preference model: whether a simulated person engages with a post they are
shown, and what the community remembers of it from one simulated day to the next.

The odds depend mostly on what Nova's ranking features can see (`ranking.schema`): whether
the viewer follows the author, how often the viewer liked or commented on the author's
posts before (`viewer_author_affinity`), how popular the post is (`post_likes`,
`post_comments`, `post_shares`), its age, and its length; and on two things no feature
shows: the viewer's taste for the post's topics and the post's own appeal. The weights are
not a recency-first ranker's guess: popularity and affinity count on a log scale, a
follow-back counts for nothing, length matters, and age is counted in simulated days, which
Nova's `post_age_hours` sees as minutes. So the starter model (`home` v0, raw counts and
mutual follows, an hour's age nearly free) ranks these people's feeds poorly, and a
logistic regression trained on the logged impressions learns to rank them better: the
point of a demo of training.

State moves on at the end of each simulated day (`World.end_day`): within a day every
decision reads the state the day started with, so decisions do not depend on the order in
which concurrent visits finish.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from deployments.demo.plan import Plan, PlannedPost, Visit
from deployments.demo.texts import COMMENTS, SHARE_NOTES, TOPICS

TOPIC_INDEX = {name: i for i, name in enumerate(TOPICS)}
ENGAGED_DWELL_MS = 5_000  # as `ranking.train` labels a dwell engaged


@dataclass(frozen=True)
class Weights:
    """Log-odds of engaging, per unit of each input."""

    bias: float = -2.5
    follows: float = 1.5
    affinity: float = 1.0  # per log(1 + the viewer's past likes and comments on the author)
    popularity: float = 0.4  # per log(1 + likes + comments + shares of the post)
    age_per_day: float = -1.0
    length_per_100_chars: float = 1.0
    taste: float = 0.5  # per standard deviation of taste for the post's topics
    quality: float = 0.3  # per standard deviation of the post's appeal
    # Given engaged, how: a click, a dwell of at least 5 s, a like, a comment, a share.
    click: float = 0.8
    long_dwell: float = 0.7
    like: float = 0.55
    comment: float = 0.15
    share: float = 0.04
    # Not engaged: a glance of under 5 s is still reported, this often.
    short_dwell: float = 0.5


@dataclass(frozen=True)
class Shown:
    """A post as a visit saw it. `post` is the plan's index when this run made it (a share
    is a post of its own, with the shared post's tags); `author` the plan's index of its
    author when one of the plan's people. `popularity` is the server's count of likes,
    comments and shares, used for posts the plan does not know."""

    post_id: str
    position: int
    model_version: str | None
    post: int | None
    author: int | None
    tags: tuple[int, ...]
    popularity: int
    text_length: int


@dataclass(frozen=True)
class Decision:
    shown: Shown
    engaged: bool
    click: bool = False
    dwell_ms: int | None = None
    like: bool = False
    comment: str | None = None
    share: str | None = None


@dataclass
class World:
    """What the demo people prefer (the plan's hidden parts) and what they have done."""

    plan: Plan
    weights: Weights = field(default_factory=Weights)
    day: int = 0
    follows: set[tuple[int, int]] = field(init=False)
    affinity: Counter[tuple[int, int]] = field(default_factory=Counter)
    popularity: Counter[int] = field(default_factory=Counter)
    liked: set[tuple[int, str]] = field(default_factory=set)
    _pending: list[tuple[int, Decision]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.follows = set(self.plan.follows)

    def post(self, index: int | None) -> PlannedPost | None:
        return None if index is None else self.plan.posts[index]

    def logit(self, viewer: int, shown: Shown) -> float:
        """Log-odds that `viewer` engages with `shown`, from the state the day started with."""
        w = self.weights
        user = self.plan.users[viewer]
        planned = self.post(shown.post)
        z = w.bias + user.propensity
        if shown.author is not None:
            z += w.follows * ((viewer, shown.author) in self.follows)
            z += w.affinity * math.log1p(self.affinity[(viewer, shown.author)])
        popularity = self.popularity[shown.post] if shown.post is not None else shown.popularity
        z += w.popularity * math.log1p(popularity)
        # A post this run did not make is older than anything it made.
        z += w.age_per_day * (self.day - planned.day if planned else self.day + 1)
        z += w.length_per_100_chars * (min(shown.text_length, 300) - 120) / 100
        if shown.tags:
            z += w.taste * float(np.mean(user.taste[list(shown.tags)]))
        if planned is not None:
            z += w.quality * planned.quality
        return z

    def probability(self, viewer: int, shown: Shown) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit(viewer, shown)))

    def decide(self, visit: Visit, shown: list[Shown]) -> list[Decision]:
        """What the visit's viewer does with each shown post (at most `visit.slots`), with
        the visit's own draws: the same posts shown give the same decisions."""
        return [
            self._decide_one(visit.viewer, item, visit.draws[k])
            for k, item in enumerate(shown[: visit.slots])
        ]

    def _decide_one(self, viewer: int, shown: Shown, u: np.ndarray) -> Decision:
        w = self.weights
        if shown.author == viewer:  # one's own post (a fallback page may show it)
            return Decision(shown, engaged=False)
        if u[0] >= self.probability(viewer, shown):
            glance = int(300 + u[7] * 4_000) if u[6] < w.short_dwell else None
            return Decision(shown, engaged=False, dwell_ms=glance)
        click = bool(u[1] < w.click)
        long_dwell = bool(u[2] < w.long_dwell)
        like = bool(u[3] < w.like) and (viewer, shown.post_id) not in self.liked
        comment = COMMENTS[int(u[8] * len(COMMENTS))] if u[4] < w.comment else None
        share = None
        if u[5] < w.share and shown.post is not None:
            share = SHARE_NOTES[int(u[8] * len(SHARE_NOTES))]
        if not (click or long_dwell or like or comment):
            click = True  # engaged means at least one thing the trainer counts
        dwell = int(ENGAGED_DWELL_MS + u[6] * 40_000) if long_dwell else None
        return Decision(shown, True, click, dwell, like, comment, share)

    def record(self, viewer: int, decisions: list[Decision]) -> None:
        """Keep a visit's decisions for the end of the day."""
        self._pending += [(viewer, d) for d in decisions if d.engaged]

    def end_day(self) -> None:
        """Fold the day's engagement into the state the next day's decisions read."""
        for viewer, decision in self._pending:
            shown = decision.shown
            touches = int(decision.like) + int(decision.comment is not None)
            if shown.author is not None and touches:
                self.affinity[(viewer, shown.author)] += touches
            if shown.post is not None:
                self.popularity[shown.post] += touches + int(decision.share is not None)
            if decision.like:
                self.liked.add((viewer, shown.post_id))
        self._pending.clear()
        self.day += 1


def tags_of(names: list[str]) -> tuple[int, ...]:
    """The plan's topic indices of a post's #tags (others are not topics of the demo)."""
    return tuple(TOPIC_INDEX[name] for name in names if name in TOPIC_INDEX)
