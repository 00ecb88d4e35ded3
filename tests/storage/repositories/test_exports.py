"""The data export queue: one open export per person, leases fenced by their attempt, so a
worker whose lease ran out can neither advance nor finish the export another claim took."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from deployments.jobs import DATA_EXPORT, ensure_data_export
from deployments.settings import Settings
from deployments.workers import stop_worker
from storage.db import Database
from storage.events import Event
from storage.repositories.exports import ExportRepository
from tests.support.social import make_members

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("no_export_worker")]


@pytest.fixture
def no_export_worker(deployed: Settings) -> Iterator[None]:
    """The deployed worker stopped, so that only the test claims exports; started again
    after."""
    stop_worker(DATA_EXPORT)
    try:
        yield
    finally:
        ensure_data_export(deployed)


def _ready_event(user: str) -> Event:
    return Event(type="privacy.export.ready", aggregate_id=user, payload={"user_id": user})


async def test_one_open_export_per_person_even_when_asked_at_once(
    db: Database, deployed: Settings
) -> None:
    [member] = await make_members(db, deployed, 1, prefix="xq")
    repo = ExportRepository(db)
    answers = await asyncio.gather(*(repo.request(member.uuid, 86_400) for _ in range(5)))
    assert len({a.id for a in answers}) == 1
    assert answers[0].status == "queued"


async def test_a_claim_whose_lease_ran_out_is_taken_over_and_fenced(
    db: Database, deployed: Settings
) -> None:
    [member] = await make_members(db, deployed, 1, prefix="xq")
    repo = ExportRepository(db)
    export = await repo.request(member.uuid, 86_400)
    first = [job for job in await repo.claim(100, 60) if job.id == export.id]
    assert [(j.status, j.attempts) for j in first] == [("running", 1)]
    assert not [job for job in await repo.claim(100, 60) if job.id == export.id]  # leased
    assert await repo.advance(export.id, 1, 0.5, 60)

    async with db.connection() as conn:  # the first worker died: its lease runs out
        await conn.execute(
            "UPDATE data_exports SET leased_until = now() - interval '1 second' WHERE id = $1",
            export.id,
        )
    second = [job for job in await repo.claim(100, 60) if job.id == export.id]
    assert [(j.attempts, j.progress) for j in second] == [(2, 0.5)]
    assert not await repo.advance(export.id, 1, 0.9, 60)
    later = datetime.now(UTC) + timedelta(days=7)
    assert await repo.finish(export.id, 1, 10, later, _ready_event(member.id)) is None
    done = await repo.finish(export.id, 2, 10, later, _ready_event(member.id))
    assert done is not None
    assert (done.status, done.progress, done.size_bytes) == ("ready", 1.0, 10)
    assert (await repo.request(member.uuid, 86_400)).id == export.id  # ready, and recent
    assert (await repo.request(member.uuid, 0)).id != export.id  # ready, but too old
