"""TimelineClient against the test stack's real TimelineShard actors: page reads over the
direct read channel answer what a Ray call answers, and survive a shard restart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import ray

from actors.directory import shard_name
from actors.read_channel import ReadClient, RemoteError
from actors.remote import NAMESPACE, TIMELINE
from actors.timeline_client import TimelineClient
from deployments.settings import Settings
from storage.db import Database
from storage.repositories.timelines import Entry
from tests.conftest import wait_until
from tests.support.social import make_members

pytestmark = pytest.mark.stack


@pytest.fixture
async def clients(deployed: Settings) -> AsyncIterator[tuple[TimelineClient, TimelineClient]]:
    direct = TimelineClient(deployed.timeline_shards)
    through_ray = TimelineClient(deployed.timeline_shards, direct_reads=False)
    yield direct, through_ray
    await direct.close()


async def seed(client: TimelineClient, user: uuid.UUID, count: int) -> list[Entry]:
    """Entries in the user's timeline, newest first (reading it first makes it active:
    fan-out skips timelines that do not exist)."""
    assert await client.page(user, None, 1) == []
    start = datetime.now(UTC) - timedelta(hours=1)
    entries = [
        Entry(start + timedelta(seconds=n), uuid.uuid4(), uuid.uuid4()) for n in range(count)
    ]
    for entry in entries:
        await client.push([user], entry)
    return sorted(entries, reverse=True)


async def one_reader(
    db: Database, deployed: Settings, client: TimelineClient, entries: int
) -> tuple[uuid.UUID, list[Entry]]:
    """A new user with `entries` in their timeline, newest first."""
    (member,) = await make_members(db, deployed, 1)
    return member.uuid, await seed(client, member.uuid, entries)


async def test_direct_reads_answer_what_ray_calls_answer(
    db: Database, deployed: Settings, clients: tuple[TimelineClient, TimelineClient]
) -> None:
    direct, through_ray = clients
    members = await make_members(db, deployed, 6)
    newest_first = {m.uuid: await seed(direct, m.uuid, 5) for m in members}

    for member in members:
        user, entries = member.uuid, newest_first[member.uuid]
        for before, limit in ((None, 3), (entries[1], 2), (entries[-1], 3), (None, 0)):
            page = await direct.page(user, before, limit)
            assert page == await through_ray.page(user, before, limit)
        assert await direct.page(user, entries[1], 2) == entries[2:4]
    assert direct.direct_reads == len(members) * 6
    assert direct.ray_reads == 0
    assert through_ray.direct_reads == 0
    assert through_ray.ray_reads == len(members) * 4


async def test_reads_reconnect_to_a_restarted_shard(
    db: Database, deployed: Settings, clients: tuple[TimelineClient, TimelineClient]
) -> None:
    direct, _ = clients
    user, entries = await one_reader(db, deployed, direct, 3)
    assert await direct.page(user, None, 5) == entries
    index = direct.shard_of(user)
    ray.kill(ray.get_actor(shard_name(TIMELINE, index), namespace=NAMESPACE), no_restart=False)

    # The restarted shard reloads the timeline from Redis; its channel has a new port.
    async def direct_again() -> bool:
        before = direct.direct_reads
        page = await direct.page(user, None, 5)
        assert page == entries
        return direct.direct_reads > before

    await wait_until(direct_again, timeout_s=60, interval_s=0.2, message="a direct read")


async def test_a_malformed_request_gets_an_error_and_changes_nothing(
    db: Database, deployed: Settings, clients: tuple[TimelineClient, TimelineClient]
) -> None:
    direct, _ = clients
    user, entries = await one_reader(db, deployed, direct, 2)
    handle = ray.get_actor(shard_name(TIMELINE, direct.shard_of(user)), namespace=NAMESPACE)
    address = await handle.read_address.remote()
    raw = ReadClient(address)
    await raw.connect(timeout_s=5)
    try:
        with pytest.raises(RemoteError, match="page request") as refused:
            await raw.call(b"\x01\x02\x03", timeout_s=5)
        assert not refused.value.retriable
    finally:
        await raw.close()
    assert await direct.page(user, None, 5) == entries
