"""`nova models evaluate` and `nova models report --plot` on the test stack: two versions
registered, one of them routed, labelled impressions logged through the analytics sink's
storage call, scoring latencies recorded by the real Ranker.

Engagement follows a known model, so the version that is that model must win on every
metric, and the other (which looks at a feature engagement ignores) must look random."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import serve

from deployments.app import RANKING_APP
from deployments.settings import Settings
from ranking.evaluate import auc, ndcg_at_k
from ranking.models import logistic_regression
from ranking.registry import register, route
from ranking.report import LATENCY_KEY, bucket_edges, timeline
from ranking.schema import NAMES
from ranking.train import Dataset
from storage.db import Database
from storage.repositories.analytics import copy_events
from tests.conftest import nova, nova_cli, wait_until
from tests.support.ranking import WAIT_S, label, weights
from tests.support.social import make_members

pytestmark = pytest.mark.stack

AFFINITY, AGE = NAMES.index("viewer_author_affinity"), NAMES.index("post_age_hours")
TRUE_MODEL = {"viewer_author_affinity": 2.0, "post_age_hours": -1.5}
TRUE_BIAS = -1.0
VIEWERS, PER_VIEWER = 50, 24


@pytest.fixture
async def viewers(db: Database, deployed: Settings) -> AsyncIterator[list[uuid.UUID]]:
    """Viewers whose logged events are removed afterwards, so no other test's training
    window sees them."""
    members = await make_members(db, deployed, VIEWERS, prefix="ev")
    ids = [uuid.UUID(m.id) for m in members]
    yield ids
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM analytics_events WHERE user_id = ANY($1::uuid[])", ids)


def event(
    user: uuid.UUID,
    post: uuid.UUID,
    kind: str,
    name: str,
    version: str,
    at: datetime,
    features: list[float] | None = None,
) -> tuple[Any, ...]:
    """An analytics_events row in `COLUMNS` order."""
    return (uuid.uuid4(), user, post, kind, name, version, 0, None, features, at)


async def log(db: Database, rows: list[tuple[Any, ...]]) -> None:
    async with db.transaction() as conn:
        await copy_events(conn, rows)


async def add_version(
    db: Database,
    settings: Settings,
    tmp_path: Path,
    name: str,
    version: str,
    bias: float,
    **named: float,
) -> None:
    path = tmp_path / f"{version}.npz"
    path.write_bytes(logistic_regression(weights(**named), bias, NAMES).to_bytes())
    store = Path(settings.model_store)
    await register(db, store, path, name=name, version=version, created_by="tests")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_evaluate_ranks_the_true_model_first_and_report_plots_each_version(
    db: Database, deployed: Settings, redis: Any, viewers: list[uuid.UUID], tmp_path: Path
) -> None:
    name = label("eval")
    await add_version(db, deployed, tmp_path, name, "good", TRUE_BIAS, **TRUE_MODEL)
    await add_version(db, deployed, tmp_path, name, "bad", 0.0, post_shares=1.5)
    await route(db, name, {"bad": 100.0}, by="tests", store=Path(deployed.model_store))

    # Impressions with features from now on (nothing else logs meanwhile), engaged by the
    # true model; each engaged one clicked a second later.
    rng = np.random.default_rng(7)
    start = datetime.now(UTC)
    x = rng.normal(size=(VIEWERS * PER_VIEWER, len(NAMES))).astype(np.float32)
    truth = 1 / (1 + np.exp(-(TRUE_BIAS + 2.0 * x[:, AFFINITY] - 1.5 * x[:, AGE])))
    y = (rng.random(len(x)) < truth).astype(np.float32)
    users = [viewers[i % VIEWERS] for i in range(len(x))]
    rows = []
    for i, (user, features, engaged) in enumerate(zip(users, x.tolist(), y, strict=True)):
        post, at, version = uuid.uuid4(), start + timedelta(milliseconds=i), ("good", "bad")[i % 2]
        rows.append(event(user, post, "IMPRESSION", name, version, at, features))
        if engaged:
            rows.append(event(user, post, "CLICK", name, version, at + timedelta(seconds=1)))
    # Older impressions without features, for the picture: hours of both versions.
    for i in range(300):
        at, post = start - timedelta(minutes=5 + i), uuid.uuid4()
        rows.append(
            event(viewers[i % VIEWERS], post, "IMPRESSION", name, ("good", "bad")[i % 2], at)
        )
    await log(db, rows)

    since = start.isoformat()
    code, out, err = await nova_cli("models", "evaluate", name, "good", "--since", since, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert (found["rows"], found["engaged"], found["viewers"]) == (len(x), int(y.sum()), VIEWERS)
    good, bad = found["versions"]
    assert (good["version"], good["route_percent"]) == ("good", 0.0)
    assert (bad["version"], bad["route_percent"]) == ("bad", 100.0)
    assert good["rows"] == bad["rows"] == len(x)

    # The numbers are those of the rows logged here, scored as the registered model does.
    model = logistic_regression(weights(**TRUE_MODEL), TRUE_BIAS, NAMES)
    scores = model.score(x)
    assert good["auc"] == pytest.approx(auc(scores, y), abs=1e-4)
    assert good["ndcg_at_10"] == pytest.approx(ndcg_at_k(scores, y, users)[0], abs=1e-4)
    # The true model wins on ranking and is calibrated; the other is a coin toss that
    # predicts about one in two where the rate is lower.
    assert good["auc"] > 0.75
    assert abs(bad["auc"] - 0.5) < 0.08
    assert good["ndcg_at_10"] > bad["ndcg_at_10"] + 0.1
    assert abs(bad["ndcg_at_10"] - found["random_ndcg_at_10"]) < 0.1
    assert good["calibration"]["ece"] < 0.08
    assert bad["calibration"]["ece"] > 0.15
    assert good["calibration"]["engaged_rate"] == pytest.approx(y.mean(), abs=1e-4)
    assert good["calibration"]["mean_score"] == pytest.approx(truth.mean(), abs=1e-3)
    table = good["calibration"]["bins"]
    assert len(table) == 10
    assert sum(b["rows"] for b in table) == len(x)

    text = await nova("models", "evaluate", name, "good", "--since", since)
    assert "good *" in text
    assert "NDCG@10" in text
    assert "(random order)" in text

    held = Dataset(x, y, [str(u) for u in users]).holdout_mask()
    code, out, err = await nova_cli(
        "models", "evaluate", name, "good", "--since", since, "--held-out", "--json"
    )
    if held.sum() >= 50 and 0 < y[held].sum() < held.sum():
        assert code == 0, err
        assert json.loads(out)["rows"] == int(held.sum())
    else:
        assert code == 2
        assert "not enough" in err

    code, _, err = await nova_cli("models", "evaluate", name, "nope", "--since", since)
    assert code == 2
    assert f"no model {name} version nope" in err
    code, _, err = await nova_cli("models", "evaluate", name, "good", "--since", "2099-01-01")
    assert code == 2
    assert "not enough logged impressions" in err

    # Scoring latencies, recorded by the Ranker with their time; a bare sample as older
    # Rankers wrote them still counts in the totals.
    ranker = serve.get_deployment_handle("Ranker", app_name=RANKING_APP)
    for _ in range(5):
        await ranker.options(multiplexed_model_id=f"{name}:good").score.remote(x[:20])
    timed = LATENCY_KEY.format(name=name, version="good")
    await wait_until(lambda: redis.llen(timed), timeout_s=WAIT_S, message="latency samples")
    assert all(b"@" in sample for sample in await redis.lrange(timed, 0, -1))
    await redis.lpush(LATENCY_KEY.format(name=name, version="bad"), "0.25")

    plot = tmp_path / "report.png"
    code, out, err = await nova_cli("models", "report", name, "--since", "6h", "--plot", str(plot))
    assert code == 0, err
    assert "impressions" in out
    assert f"plot: {plot} (per hour)" in out
    data = plot.read_bytes()
    assert png_size(data) == (1000, 700)
    assert 20_000 < len(data) < 2_000_000

    code, out, err = await nova_cli(
        "models", "report", name, "--since", "6h", "--json", "--plot", str(tmp_path / "b.png")
    )
    assert code == 0, err
    reported = {r["version"]: r for r in json.loads(out)}
    assert reported["bad"]["scoring_samples"] == 1
    assert reported["good"]["scoring_samples"] >= 1
    assert (tmp_path / "b.png").stat().st_size > 20_000

    # The picture's buckets: each hour's impressions, and the timed samples where they fell.
    window = datetime.now(UTC) - timedelta(hours=6)
    over_time = await timeline(db, redis, name, window, ["good", "bad"])
    edges = over_time.edges
    assert edges == bucket_edges(window, edges[-1])[1]
    for version in ("good", "bad"):
        expected = [0] * (len(edges) - 1)
        for row in rows:
            if row[3] == "IMPRESSION" and row[5] == version and row[9] >= window:
                expected[sum(1 for e in edges[1:-1] if e <= row[9])] += 1
        assert [b.impressions for b in over_time.versions[version]] == expected
    latency = [b.scoring_samples for b in over_time.versions["good"]]
    assert sum(latency) == await redis.llen(timed)
    assert all(not n for n, b in zip(latency, edges[1:], strict=True) if b <= start)
    assert [b.scoring_samples for b in over_time.versions["bad"]] == [0] * len(latency)
