"""The starter model: `home` v0, a hand-set logistic regression, so that the ranked feed
ranks from the first minute and every impression is logged with the features it was served
(the training data every later version learns from).

It is an ordinary version: registered like any other (`nova models list` shows it), routed
100% only when the model has no route at all, replaceable, and a rollback can return to it.
Its weights say what a newcomer to feed ranking would guess: people want posts by those
they follow and engage with, recent and already engaging posts; nothing was learned.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ranking.models import NumpyModel, logistic_regression
from ranking.registry import get_route, register, route
from ranking.schema import NAMES
from storage.db import Database
from storage.errors import InvalidInput
from storage.repositories.models import ModelStore

log = logging.getLogger(__name__)

VERSION = "v0"
CREATED_BY = "nova (starter model)"
# Per raw feature (no standardisation): a unit of each moves the log-odds this much.
WEIGHTS: dict[str, float] = {
    "post_age_hours": -0.05,  # a day old costs about what following the author gains
    "post_text_length": 0.0,
    "post_likes": 0.15,
    "post_comments": 0.3,
    "post_shares": 0.3,
    "post_clicks": 0.05,
    "author_engagement_rate": 0.2,
    "viewer_author_affinity": 0.4,
    "viewer_follows_author": 1.0,
    "mutual_follow": 0.5,
}
BIAS = -1.0


def starter_model() -> NumpyModel:
    missing = set(NAMES) - set(WEIGHTS)
    if missing or set(WEIGHTS) - set(NAMES):
        raise ValueError(f"the starter weights do not match the feature schema: {missing}")
    return logistic_regression(
        [WEIGHTS[name] for name in NAMES],
        BIAS,
        NAMES,
        meta={"starter": True, "weights": WEIGHTS, "bias": BIAS},
    )


async def ensure_starter(db: Database, store: Path, name: str) -> list[str]:
    """Register `name` v0 if it is not registered, and route all traffic to it if the
    model has no route; returns what was done (nothing on a stack that has a route)."""
    done: list[str] = []
    if await ModelStore(db).version(name, VERSION) is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}-{VERSION}.npz"
            path.write_bytes(starter_model().to_bytes())
            try:
                await register(
                    db,
                    store,
                    path,
                    name=name,
                    version=VERSION,
                    created_by=CREATED_BY,
                    notes="starter: hand-set logistic regression, nothing learned",
                )
                done.append(f"registered {name} {VERSION}")
            except InvalidInput:  # another deploy registered it meanwhile
                pass
    if await get_route(db, name) is None:
        await route(db, name, {VERSION: 100.0}, by=CREATED_BY, store=store)
        done.append(f"routed {name} {VERSION}=100")
    for line in done:
        log.info("starter model: %s", line)
    return done
