"""The benchmark table: a goal row's ratio and verdict, the scenarios' reports found in
their output, and the table and chart made from them. Pure logic, no stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.goals import TIMES, Goal
from bench.runner import last_json_document
from bench.table import NONE, TABLE_BEGIN, TABLE_END, chart, markdown, replace_in_docs


def test_a_latency_goal_bounds_the_ratio_from_above() -> None:
    row = Goal("p99", 30.0, 10.0, "ms", "bare Serve", at_most=3.0)
    assert (row.ratio, row.met, row.goal) == (3.0, True, f"≤ 3{TIMES}")
    assert Goal("p99", 31.0, 10.0, "ms", "bare Serve", at_most=3.0).met is False


def test_a_throughput_goal_bounds_the_ratio_from_below() -> None:
    assert Goal("likes", 60.0, 100.0, "/s", "me", at_least=0.6).met is True
    assert Goal("likes", 59.0, 100.0, "/s", "me", at_least=0.6).met is False


def test_a_row_fails_without_a_ratio_or_when_its_condition_does_not_hold() -> None:
    assert Goal("p99", None, 10.0, "ms", "floor", at_most=3.0).met is False
    assert Goal("p99", 5.0, 0.0, "ms", "floor", at_most=3.0).met is False
    assert Goal("p99", 5.0, 10.0, "ms", "floor", at_most=3.0, also=False).met is False


def test_a_row_without_a_goal_only_reports() -> None:
    row = Goal("memory", 900.0, 300.0, "MiB", "Ray")
    assert (row.ratio, row.met, row.goal) == (3.0, None, "report")
    assert Goal("p99", 5.0, 10.0, "ms", "floor", also=False, note="2 lost").met is False


def test_the_last_json_document_is_the_report() -> None:
    output = (
        'connecting {not json}\n{"scenario": "a", "x": {"y": 1}}\nlog line\n{"scenario": "b"}\n'
    )
    assert last_json_document(output) == {"scenario": "b"}
    assert last_json_document("no report here") is None


def _report() -> dict[str, Any]:
    return {
        "started_at": "2026-12-08T03:00:00+00:00",
        "fresh_stack_per_scenario": True,
        "machine": {
            "cpus": 2,
            "cpu_model": "a CPU",
            "memory_gib": 23.0,
            "python": "3.11.7",
            "ray": "2.x",
        },
        "scenarios": [
            {
                "scenario": "likes",
                "goals": [
                    Goal(
                        "likePost over me, throughput", 400.0, 1000.0, "/s", "me", at_least=0.6
                    ).to_dict(),
                    Goal("shard over SQL", 3000.0, 900.0, "/s", "SQL").to_dict(),
                ],
            },
            {"scenario": "chat", "error": "exit 1: Traceback\nRuntimeError: the stack went away"},
        ],
    }


def test_the_table_has_a_row_per_goal_and_names_what_did_not_finish() -> None:
    table = markdown(_report())
    assert "2 cores" in table
    assert "fresh stack" in table
    assert "Scenarios in this run: `likes`, `chat`." in table
    row = (
        "| likes | likePost over me, throughput | 400.0 /s | me | 1,000.0 /s"
        " | 0.4{x} | ≥ 0.6{x} | ✗ |"
    )
    assert row.format(x=TIMES) in table
    assert "| likes | shard over SQL |" in table
    assert f"| report | {NONE} |" in table
    assert "`chat` did not finish: RuntimeError: the stack went away" in table


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "ratios.png"
    chart(_report(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_docs_table_is_replaced_between_its_markers(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{TABLE_BEGIN}\nold\n{TABLE_END}\n\n## Method\n")
    replace_in_docs(doc, "| new |\n", "benchmarks.png")
    text = doc.read_text()
    assert "old" not in text
    assert "| new |" in text
    assert text.endswith("## Method\n")
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="lacks the markers"):
        replace_in_docs(doc, "| new |\n", "benchmarks.png")
