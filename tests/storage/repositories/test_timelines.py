"""Timeline pages cross the actor boundary packed: the round trip must be exact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from storage.repositories.timelines import Entry, pack_entries, unpack_entries


def test_entries_round_trip_exactly_and_in_order() -> None:
    start = datetime(2026, 11, 23, 23, 59, 59, 999_999, tzinfo=UTC)
    entries = [
        Entry(start - timedelta(microseconds=7 * i), uuid.uuid4(), uuid.uuid4()) for i in range(300)
    ]
    entries.append(Entry(entries[-1].created_at, uuid.uuid4(), uuid.uuid4()))  # a tie
    unpacked = unpack_entries(pack_entries(entries))
    assert unpacked == entries
    assert sorted(unpacked) == sorted(entries)  # the order Entry defines is preserved
    assert all(e.created_at.tzinfo is UTC for e in unpacked)


def test_times_in_another_zone_and_before_1970_keep_their_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    entries = [
        Entry(datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=plus_two), uuid.uuid4(), uuid.uuid4()),
        Entry(datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC), uuid.uuid4(), uuid.uuid4()),
    ]
    unpacked = unpack_entries(pack_entries(entries))
    assert [e.created_at for e in unpacked] == [e.created_at for e in entries]
    assert unpacked[0].created_at.hour == 10  # the same instant, given in UTC


def test_an_empty_page_packs_to_nothing() -> None:
    assert pack_entries([]) == b""
    assert unpack_entries(b"") == []


def test_a_truncated_page_is_refused() -> None:
    packed = pack_entries([Entry(datetime.now(UTC), uuid.uuid4(), uuid.uuid4())])
    with pytest.raises(ValueError, match="multiple of 40"):
        unpack_entries(packed[:-1])
