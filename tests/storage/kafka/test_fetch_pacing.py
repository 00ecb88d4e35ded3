"""Fetch waits: short while a group's records flow, long once idle, longer if the broker
cannot find records within them."""

from __future__ import annotations

import pytest

from storage.kafka.fetch_pacing import FetchWait


def waits(idle: int = 100, busy: int = 20, ceiling: int = 2500) -> FetchWait:
    return FetchWait(idle, busy, ceiling_ms=ceiling, idle_after_s=1.0)


def test_a_new_member_starts_idle() -> None:
    assert waits().current_ms == 100


def test_records_switch_to_the_busy_wait_once() -> None:
    fetch = waits()
    assert fetch.after_poll(True, now=10.0) == 20
    assert fetch.after_poll(True, now=10.1) is None
    assert fetch.current_ms == 20


def test_an_empty_poll_soon_after_records_stays_busy() -> None:
    fetch = waits()
    fetch.after_poll(True, now=10.0)
    assert fetch.after_poll(False, now=10.5) is None
    assert fetch.current_ms == 20


def test_a_quiet_spell_returns_to_the_idle_wait() -> None:
    fetch = waits()
    fetch.after_poll(True, now=10.0)
    assert fetch.after_poll(False, now=11.0) == 100
    assert fetch.after_poll(False, now=20.0) is None
    assert fetch.after_poll(True, now=21.0) == 20


def test_equal_waits_never_switch() -> None:
    fetch = waits(idle=500, busy=500)
    assert fetch.after_poll(True, now=1.0) is None
    assert fetch.after_poll(False, now=5.0) is None
    assert fetch.current_ms == 500


def test_a_slow_broker_doubles_the_waits_up_to_the_ceiling() -> None:
    fetch = waits(ceiling=300)
    fetch.after_poll(True, now=1.0)
    assert fetch.raise_for_slow_broker() == 40
    assert (fetch.busy_ms, fetch.idle_ms) == (40, 100)
    assert fetch.raise_for_slow_broker() == 80
    assert fetch.raise_for_slow_broker() == 160
    # Going idle keeps at least what the busy wait already proved too short.
    assert (fetch.busy_ms, fetch.idle_ms) == (160, 160)
    assert fetch.after_poll(False, now=5.0) is None
    assert fetch.current_ms == 160
    assert fetch.raise_for_slow_broker() == 300
    assert fetch.raise_for_slow_broker() is None
    assert (fetch.busy_ms, fetch.idle_ms) == (300, 300)


def test_a_slow_broker_while_idle_raises_the_idle_wait() -> None:
    fetch = waits()
    assert fetch.raise_for_slow_broker() == 200
    assert (fetch.busy_ms, fetch.idle_ms) == (200, 200)


@pytest.mark.parametrize(
    ("idle", "busy", "ceiling"), [(100, 0, 200), (100, 101, 200), (300, 20, 200)]
)
def test_inconsistent_waits_are_refused(idle: int, busy: int, ceiling: int) -> None:
    with pytest.raises(ValueError, match="fetch waits"):
        FetchWait(idle, busy, ceiling_ms=ceiling)
