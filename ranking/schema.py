"""The feature schema: what a ranking model sees for one (viewer, post) pair, in order.

Models record the schema they were trained on (names, in column order, and the
fingerprint); the registry refuses a model whose schema differs from this one, so a
served model never reads a column as something it is not. Adding a feature changes the
fingerprint: retrain, then register.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

DTYPE = np.float32


@dataclass(frozen=True)
class Feature:
    name: str
    default: float
    source: str  # the events (or computation) that keep it current
    description: str
    dtype: str = "float32"


FEATURES: tuple[Feature, ...] = (
    Feature("post_age_hours", 72.0, "content.post.created", "hours since the post was created"),
    Feature("post_text_length", 0.0, "content.post.created", "characters in the post text"),
    Feature("post_likes", 0.0, "social.like.*", "likes on the post, decayed by half-life"),
    Feature("post_comments", 0.0, "social.comment.*", "comments on the post, decayed"),
    Feature("post_shares", 0.0, "social.share.*", "shares of the post, decayed"),
    Feature("post_clicks", 0.0, "analytics.events", "clicks on the post, decayed"),
    Feature(
        "author_engagement_rate",
        0.0,
        "social.like.*, social.comment.*, social.share.*, content.post.created",
        "engagements the author's posts received per post",
    ),
    Feature(
        "viewer_author_affinity",
        0.0,
        "social.like.*, social.comment.*",
        "the viewer's likes and comments on the author's posts, decayed",
    ),
    Feature("viewer_follows_author", 0.0, "graph.follow.*", "1 if the viewer follows the author"),
    Feature("mutual_follow", 0.0, "graph.follow.*", "1 if viewer and author follow each other"),
)

NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
DEFAULTS: np.ndarray = np.array([f.default for f in FEATURES], dtype=DTYPE)


def fingerprint(names: tuple[str, ...] | list[str] = NAMES) -> str:
    """A short stable id of a schema: its names and dtypes in column order."""
    text = "|".join(f"{name}:float32" for name in names)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FINGERPRINT = fingerprint()


class SchemaMismatch(ValueError):
    """A model expects features other than the feature store serves."""


def check_schema(names: list[str] | tuple[str, ...]) -> None:
    """Raise `SchemaMismatch` naming what differs when `names` is not the served schema."""
    if tuple(names) == NAMES:
        return
    missing = [n for n in NAMES if n not in names]
    unknown = [n for n in names if n not in NAMES]
    details = []
    if missing:
        details.append(f"missing {missing}")
    if unknown:
        details.append(f"unknown {unknown}")
    if not details:
        details.append("same names in a different order")
    raise SchemaMismatch(
        f"model features do not match the feature store schema {FINGERPRINT}: "
        + "; ".join(details)
        + f" (served: {list(NAMES)})"
    )
