"""One table and one chart from a run of `python -m bench`: every scenario's goal rows
(`bench.goals`) with figure, floor or baseline, ratio, goal and whether it was met."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.goals import TIMES

TABLE_BEGIN = "<!-- bench table: begin -->"
TABLE_END = "<!-- bench table: end -->"
NONE = "\u2013"  # an en dash: no figure


def rows(report: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(scenario, row) for every goal row of every scenario that ran."""
    for document in report["scenarios"]:
        for goal in document.get("goals") or []:
            yield document["scenario"], goal


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return NONE
    text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def _met(goal: Mapping[str, Any]) -> str:
    met = goal.get("met")
    return NONE if met is None else ("✓" if met else "✗")


def markdown(report: Mapping[str, Any]) -> str:
    """The table, with the date and the machine, and the scenarios that failed."""
    machine = report["machine"]
    lines = [
        f"Run of {report['started_at'][:10]} on {machine['cpus']} cores"
        f" ({machine['cpu_model'] or 'unknown CPU'}), {machine['memory_gib']} GiB,"
        f" Python {machine['python']}, Ray {machine['ray']}"
        + (", each scenario on a fresh stack." if report.get("fresh_stack_per_scenario") else "."),
        "Scenarios in this run: "
        + ", ".join(f"`{d['scenario']}`" for d in report["scenarios"])
        + ".",
        "",
        "| scenario | figure | Nova | floor or baseline | floor | ratio | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, goal in rows(report):
        note = f" ({goal['note']})" if goal.get("note") else ""
        lines.append(
            f"| {scenario} | {goal['row']}{note} | {_number(goal['figure'], goal['unit'])}"
            f" | {goal['floor_name']} | {_number(goal['floor'], goal['unit'])}"
            f" | {_number(goal['ratio'])}{TIMES} | {goal['goal']} | {_met(goal)} |"
        )
    failed = [d for d in report["scenarios"] if "error" in d]
    if failed:
        lines.append("")
        for document in failed:
            first_line = document["error"].strip().splitlines()[-1][:200]
            lines.append(f"- `{document['scenario']}` did not finish: {first_line}")
    return "\n".join(lines) + "\n"


def chart(report: Mapping[str, Any], path: Path) -> None:
    """Each row's ratio as a bar (log scale), its goal as a mark; green when met."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    goals = [
        (f"{scenario}: {goal['row']}", goal)
        for scenario, goal in rows(report)
        if goal.get("ratio") is not None
    ]
    height = max(2.5, 0.45 * len(goals) + 1.2)
    figure, axes = plt.subplots(figsize=(11, height))
    labels = [label for label, _ in goals]
    ratios = [goal["ratio"] for _, goal in goals]
    colours = [
        "#4c9a2a" if goal.get("met") else ("#c0392b" if goal.get("met") is False else "#7f8c8d")
        for _, goal in goals
    ]
    positions = list(range(len(goals)))
    axes.barh(positions, ratios, color=colours)
    for y, (_, goal) in zip(positions, goals, strict=True):
        bound = goal.get("at_most") if goal.get("at_most") is not None else goal.get("at_least")
        if bound is not None:
            axes.plot([bound, bound], [y - 0.4, y + 0.4], color="black", linewidth=2)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    axes.set_xlabel("ratio to the floor or baseline measured in the same run (black: the goal)")
    axes.set_title(f"Nova benchmarks, {report['started_at'][:10]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def replace_in_docs(doc: Path, table: str, chart_name: str) -> None:
    """Put the table (and a link to the chart) between the markers in `doc`."""
    text = doc.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(f"{doc} lacks the markers {TABLE_BEGIN} … {TABLE_END}")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    body = f"{TABLE_BEGIN}\n{table}\n![Ratios against their goals]({chart_name})\n{TABLE_END}"
    doc.write_text(head + body + tail)
