"""The data scientist's walk-through of docs/data-science.md, as written, on the test stack
(small sizes): the starter model ranks from the first request; `nova demo seed` makes a
community that reads its feeds; `nova models train` makes a version that beats the starter
on held-out impressions; it goes to 10% of users; `report` and `evaluate` show both; and a
rollback returns everyone to the starter."""

from __future__ import annotations

import re

import pytest

from deployments.settings import Settings
from ranking.starter import VERSION
from storage.db import Database
from tests.conftest import nova_cli
from tests.support.ranking import followed_posts, label, ranked, serve_only

pytestmark = [pytest.mark.stack, pytest.mark.seeds_demo]

HELD_OUT = re.compile(r"held-out AUC ([0-9.]+); on the same rows: (\S+) \(serving\) ([0-9.]+)")


async def run(*args: str, timeout_s: float = 120) -> str:
    code, out, err = await nova_cli(*args, timeout_s=timeout_s)
    assert code == 0, f"nova {' '.join(args)}: {err or out}"
    return out


async def test_the_walk_through_runs_as_written(
    http_url: str, db: Database, deployed: Settings
) -> None:
    name = deployed.ranking_model
    await serve_only(db, deployed, VERSION)  # as a fresh stack has it
    assert "100% traffic" in await run("models", "list", name)
    viewer, _, _ = await followed_posts(db, deployed, http_url, ["ranked at once"])
    edges = (await ranked(http_url, viewer))["edges"]
    assert edges
    assert {e["modelVersion"] for e in edges} == {VERSION}
    assert all(e["score"] is not None for e in edges)

    seeded = await run("demo", "seed", "--users", "30", "--days", "2", "--seed", "5", "--force")
    assert "impressions" in seeded

    version = label("v1")
    trained = await run("models", "train", "--since", "1h", "--version", version)
    found = HELD_OUT.search(trained)
    assert found, trained
    new_auc, serving, serving_auc = float(found[1]), found[2], float(found[3])
    assert serving == VERSION
    assert new_auc > serving_auc, trained

    await run("models", "route", name, f"{VERSION}=90", f"{version}=10")
    report = await run("models", "report", name, "--since", "1h")
    assert VERSION in report
    assert version in report
    evaluated = await run("models", "evaluate", name, version, "--since", "1h", "--held-out")
    assert version in evaluated
    assert VERSION in evaluated
    back = await run("models", "rollback", name)
    assert f"back to {VERSION}=100" in back
