from __future__ import annotations

import pytest

from storage.tracing import new_traceparent, parse_traceparent, trace_id_of


def test_new_traceparent_continues_a_trace_with_a_new_span() -> None:
    parent = new_traceparent()
    child = new_traceparent(trace_id_of(parent))
    assert parse_traceparent(child) == child
    assert trace_id_of(child) == trace_id_of(parent)
    assert child != parent


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
        "00-" + "1" * 32 + "-" + "0" * 16 + "-01",
        "00-" + "g" * 32 + "-" + "1" * 16 + "-01",
    ],
)
def test_malformed_traceparents_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None
