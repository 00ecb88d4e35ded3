from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from deployments.cli import build_parser
from deployments.cli.common import parse_since


def test_relative_since() -> None:
    moment = parse_since("2h")
    assert abs(datetime.now(UTC) - timedelta(hours=2) - moment) < timedelta(seconds=5)


def test_absolute_since_defaults_to_utc() -> None:
    assert parse_since("2026-11-22T10:00:00") == datetime(2026, 11, 22, 10, tzinfo=UTC)


def test_bad_since_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="15m / 2h / 7d"):
        parse_since("yesterday")


def test_dlq_replay_parses_repeated_ids() -> None:
    args = build_parser().parse_args(["dlq", "replay", "--id", "3", "--id", "5"])
    assert args.ids == [3, 5]


def test_bench_passes_its_arguments_to_python_m_bench() -> None:
    args = build_parser().parse_args(["bench", "likes", "chat", "--docs"])
    assert args.bench_args == ["likes", "chat", "--docs"]
