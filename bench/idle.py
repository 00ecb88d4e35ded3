"""Idle benchmark: what a fresh stack costs before any user arrives.

    cd /work/main && .venv/bin/python -m bench.idle [--settle-s 20 --window-s 60]

Run it on a stack just started (`python -m bench idle` starts one). It finds every process
the stack started: those named by a pid file in the state dir or naming the state dir on
their command line (PostgreSQL, Redis, the broker, the SMTP sink, Prometheus, the
supervisor, Ray's head daemons), and all their descendants (PostgreSQL's backends, Ray's
workers, actors and Serve replicas, HAProxy). After `--settle-s` it reads their CPU times
every 2 s for `--window-s`, and at the end their memory.

Figures: CPU used over the window, in percent of one core, in all and by component; the
resident memory (RSS, and USS: the pages no other process shares) in all and by
component. Ray's own daemons (GCS, raylet, dashboard and its agents) are the floor: what
an idle Ray node with the dashboard costs whatever runs on it. Nothing is sent to the
stack: this scenario reads `/proc` only.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.goals import Goal
from bench.harness import report
from deployments.stack import dev_layout

SCENARIO = "idle"
SCAN_EVERY_S = 2.0
# Ray's own processes: what any Ray node with its dashboard runs, Nova or not.
RAY_DAEMONS = ("gcs_server", "raylet", "dashboard", "ray-dashboard", "log_monitor", "monitor")
IDLE_CPU_GOAL = 0.20  # of one core


def component(process: psutil.Process) -> str:
    """A name to group a process under: its Ray actor or replica class, or its program."""
    try:
        cmdline = process.cmdline()
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    title = " ".join(cmdline) if cmdline else name
    if title.startswith("ray::"):
        # "ray::ServeReplica:nova:Gateway", "ray::CounterShardActor", "ray::IDLE"
        return str(title.split()[0].removeprefix("ray::").split(".")[0])
    if title.startswith("ray-dashboard-"):
        return "ray dashboard: " + title.split()[0].removeprefix("ray-dashboard-")
    if title.startswith("postgres"):
        return "postgres"
    for program in ("gcs_server", "raylet", "redis-server", "tansu", "prometheus", "haproxy"):
        if program in name or program in title.split()[0]:
            return program
    for module, label in (
        ("deployments.stack.supervisor", "nova supervisor"),
        ("aiosmtpd", "smtp sink"),
        ("dashboard/dashboard.py", "dashboard"),
        ("dashboard/agent.py", "dashboard agent"),
        ("runtime_env/agent", "runtime env agent"),
        ("log_monitor", "log_monitor"),
        ("autoscaler/_private/monitor", "monitor"),
        ("multiprocessing.forkserver", "dashboard"),
    ):
        if module in title:
            return label
    return str(name)


def stack_processes(state_dir: Path) -> dict[int, psutil.Process]:
    """Every live process the stack started, by pid (`stack_roots` and descendants)."""
    found: dict[int, psutil.Process] = {}
    for root in stack_roots(state_dir):
        for process in [root, *_children(root)]:
            found.setdefault(process.pid, process)
    found.pop(psutil.Process().pid, None)
    return found


def stack_roots(state_dir: Path) -> list[psutil.Process]:
    """Processes a pid file in the state dir names, and those whose command line names
    the state dir (Ray's daemons name their session dir in it)."""
    pids = set()
    for pid_file in state_dir.rglob("*.pid"):
        try:
            pids.add(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    marker = f"{state_dir}/"
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(marker in part for part in cmdline):
            pids.add(process.pid)
    roots = []
    for pid in pids:
        try:
            roots.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return roots


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return list(process.children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _cpu_s(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(times.user + times.system)


@dataclass
class CpuLedger:
    """CPU seconds each process used inside the window: its last reading minus its first
    (zero for a process that started inside it)."""

    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def read(self, processes: dict[int, psutil.Process], *, at_start: bool) -> None:
        for pid, process in processes.items():
            used = _cpu_s(process)
            if used is None:
                continue
            if pid not in self.first:
                self.first[pid] = used if at_start else 0.0
                self.names[pid] = component(process)
            self.last[pid] = used

    def by_component(self) -> dict[str, float]:
        totals: dict[str, float] = collections.defaultdict(float)
        for pid, last in self.last.items():
            totals[self.names[pid]] += last - self.first[pid]
        return dict(totals)


def memory_by_component(processes: dict[int, psutil.Process]) -> dict[str, dict[str, float]]:
    """RSS and USS in MiB, summed by component."""
    totals: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"rss": 0.0, "uss": 0.0})
    for process in processes.values():
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        entry = totals[component(process)]
        entry["rss"] += info.rss / 2**20
        entry["uss"] += info.uss / 2**20
    return {name: {k: round(v, 1) for k, v in m.items()} for name, m in totals.items()}


def is_ray_daemon(name: str) -> bool:
    return name.startswith(RAY_DAEMONS) or name in (
        "DashboardAgent",
        "RuntimeEnvAgent",
        "dashboard agent",
        "runtime env agent",
    )


def measure(state_dir: Path, *, settle_s: float, window_s: float) -> dict[str, Any]:
    time.sleep(settle_s)
    ledger = CpuLedger()
    started = time.monotonic()
    ledger.read(stack_processes(state_dir), at_start=True)
    while time.monotonic() - started < window_s:
        time.sleep(min(SCAN_EVERY_S, max(0.0, window_s - (time.monotonic() - started))))
        ledger.read(stack_processes(state_dir), at_start=False)
    elapsed = time.monotonic() - started
    processes = stack_processes(state_dir)
    cpu = {name: round(100 * s / elapsed, 2) for name, s in ledger.by_component().items()}
    memory = memory_by_component(processes)
    counts = collections.Counter(component(p) for p in processes.values())
    total_cpu = round(sum(cpu.values()), 2)
    ray_cpu = round(sum(v for k, v in cpu.items() if is_ray_daemon(k)), 2)
    total_rss = round(sum(m["rss"] for m in memory.values()), 1)
    total_uss = round(sum(m["uss"] for m in memory.values()), 1)
    ray_uss = round(sum(m["uss"] for k, m in memory.items() if is_ray_daemon(k)), 1)
    goals = [
        Goal(
            "idle CPU of a fresh stack, % of a core",
            total_cpu,
            100.0,
            "% of a core",
            "one core",
            at_most=IDLE_CPU_GOAL,
        ),
        Goal(
            "idle CPU of Ray's own daemons (the platform), % of a core",
            ray_cpu,
            100.0,
            "% of a core",
            "one core",
        ),
        Goal(
            "memory of a fresh idle stack (USS, MiB) over Ray's own daemons'",
            total_uss,
            ray_uss,
            "MiB",
            "Ray's own daemons (USS)",
        ),
    ]
    return {
        "state_dir": str(state_dir),
        "settle_s": settle_s,
        "window_s": round(elapsed, 1),
        "processes": len(processes),
        "cpu_percent_of_a_core": {
            "total": total_cpu,
            "ray_daemons": ray_cpu,
            "by_component": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        },
        "memory_mib": {
            "rss_total": total_rss,
            "uss_total": total_uss,
            "uss_ray_daemons": ray_uss,
            "by_component": dict(sorted(memory.items(), key=lambda kv: -kv[1]["uss"])),
        },
        "processes_by_component": dict(sorted(counts.items())),
        "ratios": {
            "idle_cpu_of_a_core": round(total_cpu / 100, 3),
            "uss_over_ray_daemons": round(total_uss / ray_uss, 3) if ray_uss else None,
        },
        "goals": [g.to_dict() for g in goals],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle-s", type=float, default=20.0)
    parser.add_argument("--window-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    state_dir = dev_layout().state_dir
    if not state_dir.exists():
        print(f"bench.idle: no stack at {state_dir}: start one with `nova up`", file=sys.stderr)
        return 2
    report(SCENARIO, measure(state_dir, settle_s=args.settle_s, window_s=args.window_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
