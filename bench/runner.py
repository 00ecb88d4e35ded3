"""Runs benchmark scenarios, each on a fresh stack of its own, and gathers their reports.

The bench stack has its own state dir and ports (`BENCH_PORT_BASE`), so it never touches
the dev stack or the test stack; it runs with `bench/bench.env` (per-IP budgets raised:
every request comes from 127.0.0.1). For each scenario: `nova stop`, the state dir
removed, `nova up`, the scenario as `python -m bench.<name>` (its last JSON
document is its report), and `nova stop` at the end. Every step is bounded in time.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_ENV = REPO / "bench" / "bench.env"
BENCH_PORT_BASE = 24_000  # dev 20000, tests 21000, multi-node 23000, restore 26000
UP_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Scenario:
    name: str
    args: tuple[str, ...] = ()
    timeout_s: float = 1_800.0


# In the order they run; `idle` first, as its stack must be untouched (every one gets a
# fresh stack anyway).
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("idle", timeout_s=300),
        Scenario("gateway"),
        Scenario("likes"),
        Scenario("chat"),
        Scenario("ranking"),
        Scenario("outbox", ("--rate", "300")),
        Scenario("fanout", timeout_s=3_600),
        Scenario("notifications"),
        Scenario("media"),
        Scenario("takedown"),
        Scenario("latest_features"),
        Scenario("client"),
        Scenario("rolling_deploy"),
    )
}


def bench_environment(state_dir: Path) -> dict[str, str]:
    """This process's environment without Nova's and Ray's variables, plus bench.env and
    the bench stack's state dir and ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOVA_", "RAY_"))}
    for line in BENCH_ENV.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            env[key.strip()] = value.strip()
    base = BENCH_PORT_BASE
    env.update(
        NOVA_STATE_DIR=str(state_dir),
        NOVA_PORT_BASE=str(base),
        NOVA_HTTP_PORT=str(base + 800),
        NOVA_DASHBOARD_PORT=str(base + 265),
        NOVA_GRPC_PORT=str(base + 900),
    )
    return env


def default_state_dir() -> Path:
    root = Path("/var/lib") if os.geteuid() == 0 else Path.home() / ".local" / "state"
    return root / "nova-bench"


def _nova(env: Mapping[str, str], *args: str, timeout_s: float, log: Path) -> None:
    """Run `nova ARGS` with `env`, its output appended to `log`; raise if it fails."""
    with log.open("a") as output:
        output.write(f"\n$ nova {' '.join(args)}\n")
        output.flush()
        code = subprocess.call(
            [sys.executable, "-m", "deployments.cli", *args],
            cwd=REPO,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
        )
    if code != 0:
        raise RuntimeError(f"nova {' '.join(args)} exited {code}; see {log}")


def fresh_stack(env: Mapping[str, str], state_dir: Path, log: Path) -> float:
    """Stop the bench stack, remove its state, start it again; the seconds `up` took."""
    _nova(env, "stop", timeout_s=STOP_TIMEOUT_S, log=log)
    shutil.rmtree(state_dir, ignore_errors=True)
    started = time.monotonic()
    _nova(env, "up", timeout_s=UP_TIMEOUT_S, log=log)
    return round(time.monotonic() - started, 1)


def run_scenario(scenario: Scenario, env: Mapping[str, str], log: Path) -> dict[str, Any]:
    """The scenario's report (its last JSON document on stdout), or what went wrong."""
    began = time.monotonic()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", f"bench.{scenario.name}", *scenario.args],
            cwd=REPO,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=scenario.timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"scenario": scenario.name, "error": f"timed out after {scenario.timeout_s} s"}
    with log.open("a") as output:
        output.write(f"\n$ python -m bench.{scenario.name}\n{completed.stderr[-20_000:]}\n")
    document = last_json_document(completed.stdout)
    if completed.returncode != 0 or document is None:
        tail = (completed.stderr or completed.stdout)[-2_000:]
        return {"scenario": scenario.name, "error": f"exit {completed.returncode}: {tail}"}
    document["duration_s"] = round(time.monotonic() - began, 1)
    return document


def last_json_document(text: str) -> dict[str, Any] | None:
    """The last top-level JSON object printed (scenarios print one, indented)."""
    decoder = json.JSONDecoder()
    found = None
    index = text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
        except ValueError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            found = value
        index = text.find("{", end)
    return found


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import ray

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
    }


def run_all(
    names: list[str],
    *,
    state_dir: Path,
    log: Path,
    fresh: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every named scenario on its own fresh stack (or on the running bench stack), then
    the stack stopped; the whole report."""
    env = bench_environment(state_dir) if fresh else dict(os.environ)
    started_at = datetime.now(UTC)
    documents = []
    try:
        for name in names:
            scenario = SCENARIOS[name]
            up_s = None
            if fresh:
                say(f"==> {name}: a fresh stack")
                try:
                    up_s = fresh_stack(env, state_dir, log)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    documents.append({"scenario": name, "error": f"stack: {exc}"})
                    continue
            say(f"==> {name}: running (at most {scenario.timeout_s:.0f} s)")
            document = run_scenario(scenario, env, log)
            document["stack_up_s"] = up_s
            documents.append(document)
            outcome = f"failed: {document['error'][:300]}" if "error" in document else "done"
            say(f"    {name}: {outcome}")
    finally:
        if fresh:
            try:
                _nova(env, "stop", timeout_s=STOP_TIMEOUT_S, log=log)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                say(f"nova stop: {exc}")
    return {
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "fresh_stack_per_scenario": fresh,
        "scenarios": documents,
    }
