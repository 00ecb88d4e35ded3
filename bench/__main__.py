"""`python -m bench` (or `nova bench`): run the benchmark scenarios, each on a fresh stack,
and write one JSON report, one Markdown table and one chart of the ratios.

    python -m bench                    every scenario
    python -m bench likes chat         those
    python -m bench --docs             and put the table in docs/benchmarks.md
    python -m bench --running          on the stack the environment names (the dev stack)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.runner import REPO, SCENARIOS, default_state_dir, run_all
from bench.table import chart, markdown, replace_in_docs

DOCS = REPO / "docs" / "benchmarks.md"
CHART_IN_DOCS = "benchmarks.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmarks, each on a fresh stack: one report, table and chart.",
    )
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results", help="where the report goes"
    )
    parser.add_argument(
        "--running",
        action="store_true",
        help="use the stack the environment names instead of a fresh one per scenario",
    )
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument("--docs", action="store_true", help="write the table into the docs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; there are {', '.join(SCENARIOS)}")
    names = args.scenarios or list(SCENARIOS)

    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "bench.log"
    log.write_text("")
    report = run_all(names, state_dir=args.state_dir, log=log, fresh=not args.running)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    table = markdown(report)
    (args.out / "table.md").write_text(table)
    chart(report, args.out / "ratios.png")
    print(f"\n{table}\nreport: {args.out / 'report.json'}; chart: {args.out / 'ratios.png'}")
    if args.docs:
        replace_in_docs(DOCS, table, CHART_IN_DOCS)
        (DOCS.parent / CHART_IN_DOCS).write_bytes((args.out / "ratios.png").read_bytes())
        print(f"docs: {DOCS}")
    return 1 if any("error" in d for d in report["scenarios"]) else 0


if __name__ == "__main__":
    sys.exit(main())
