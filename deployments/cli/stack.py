"""`nova up`, `stop`, `deploy`, `test`, `config`, `schema`: running Nova and the
contracts it is checked against."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from deployments.cli.common import REPO_ROOT, connect_ray
from deployments.rollout import Rollout
from deployments.stack import LOCALHOST, Stack, dev_layout
from deployments.stack.debian import ensure_chromium
from deployments.stack.processes import StackError, venv_bin
from deployments.web_build import ensure_web_client


def cmd_up(args: argparse.Namespace) -> int:
    layout = dev_layout()
    stack = Stack(layout)
    print(f"state dir: {layout.state_dir}", flush=True)
    env = stack.up()
    for part, state in stack.status().items():
        print(f"  {part:<11} {state}", flush=True)
    web = ""
    if not args.no_deploy:
        web = _build_web_client(skip=args.no_web)
        _deploy(env, http_port=layout.http_port, grpc_port=layout.grpc_port)
    # Reset and verification mail lands here (a Maildir) when the SMTP server is embedded.
    mail = f"  Mail       {layout.mail_dir}  (Maildir)\n" if stack.embedded()["smtp"] else ""
    print(
        f"\nNova is up.\n"
        f"  Web client http://{LOCALHOST}:{layout.http_port}/{web}\n"
        f"  GraphQL    http://{LOCALHOST}:{layout.http_port}/graphql"
        "  (WebSocket on the same path; GraphiQL for a browser)\n"
        f"  Readiness  http://{LOCALHOST}:{layout.http_port}/readyz\n"
        f"  gRPC       {LOCALHOST}:{layout.grpc_port}  (Ranker.Rank, FeatureStore.GetFeatures;"
        " metadata application=ranking)\n"
        f"  Dashboard  http://{LOCALHOST}:{layout.dashboard_port}  "
        f"(token: {stack.ray.token_file})\n"
        f"{mail}"
        f"  Stop with  nova stop   (or .venv/bin/nova stop)\n",
        flush=True,
    )
    return 0


def _build_web_client(*, skip: bool) -> str:
    """Build the web client if its sources changed; a note for the banner. The API does
    not need it: a failed build is reported, and the pages answer 503 until one works."""
    if skip:
        return "  (not built: --no-web)"
    try:
        ensure_web_client()
    except StackError as exc:
        print(f"the web client could not be built; the API is served without it:\n{exc}")
        return "  (not built: see above)"
    return ""


def _deploy(
    env: dict[str, str],
    *,
    http_port: int | None,
    http_host: str = LOCALHOST,
    grpc_port: int | None = None,
    follow_rollout: bool = False,
) -> None:
    """Deploy; with `follow_rollout`, say how the gateway's rolling update went."""
    connect_ray(env)
    from deployments.app import APP_NAME, deploy
    from deployments.rollout import RolloutWatch
    from deployments.settings import Settings

    settings = Settings.from_env(env)
    if grpc_port is not None:
        settings = settings.replace(grpc_port=grpc_port)
    port = settings.http_port if http_port is None else http_port
    watch = RolloutWatch(APP_NAME).start() if follow_rollout else None
    if watch is not None and watch.old:
        print(
            f"  gateway: replacing {len(watch.old)} replicas; each keeps serving while it"
            " drains (about 30 s)",
            flush=True,
        )
    mismatched = deploy(settings, http_host=http_host, http_port=port)
    for topic, partitions in mismatched.items():
        print(
            f"  warning: topic {topic} has {partitions} partitions, catalogue differs",
            file=sys.stderr,
        )
    print("  deployed: gateway, ranking, relays, consumers, shards", flush=True)
    if watch is not None:
        _report_rollout(watch.result(timeout_s=ROLLOUT_WAIT_S))


# Serve's deploy returns once the application runs; the replaced replicas are gone by then,
# or stop within their graceful shutdown timeout (35 s at least for the gateway).
ROLLOUT_WAIT_S = 60.0


def _report_rollout(rollout: Rollout) -> None:
    print(f"  gateway: the new replicas ran after {rollout.new_running_s:.1f} s", flush=True)
    if rollout.replaced:
        print(
            f"  gateway: the {rollout.replaced} replaced replicas drained and stopped after"
            f" {rollout.old_stopped_s:.1f} s: their WebSockets were closed with 1012"
            " (reconnect, resume chat with afterSeq), their HTTP requests let finish",
            flush=True,
        )


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy to an existing Ray cluster; every URL comes from the environment."""
    missing = [
        k
        for k in ("NOVA_DATABASE_URL", "NOVA_REDIS_URL", "NOVA_KAFKA_BOOTSTRAP", "RAY_ADDRESS")
        if k not in os.environ
    ]
    if missing:
        print(f"nova deploy needs {', '.join(missing)} in the environment", file=sys.stderr)
        return 2
    try:
        _deploy(
            dict(os.environ),
            http_port=args.http_port,
            http_host=args.http_host,
            follow_rollout=True,
        )
    except TimeoutError as exc:  # deployed, but the new version is not confirmed running
        print(f"nova deploy: {exc}; see nova status", file=sys.stderr)
        return 1
    return 0


def cmd_stop(_: argparse.Namespace) -> int:
    stopped = Stack(dev_layout()).down()
    print(f"stopped: {', '.join(stopped) or 'nothing'}")
    return 0


def cmd_config(_: argparse.Namespace) -> int:
    """Print every setting, layer by layer: variable, default, meaning (the table in
    docs/operations.md, which a test keeps equal to this)."""
    from deployments.settings import settings_table

    print(settings_table())
    return 0


SCHEMA_FILE = REPO_ROOT / "schema.graphql"


def served_schema() -> str:
    """The GraphQL schema the gateway serves, as SDL (the text of `schema.graphql`)."""
    from gateway.schema.root import schema

    return schema.as_str() + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the served schema to `schema.graphql`, or with `--check` fail when they differ:
    the file is the public contract clients and reviewers read."""
    path = Path(args.output)
    text = served_schema()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(
                f"nova: {path} differs from the served schema; run `nova schema`", file=sys.stderr
            )
            return 1
        print(f"{path} matches the served schema")
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """`python -m bench` with these arguments (`bench/__main__.py`)."""
    return subprocess.call([sys.executable, "-m", "bench", *args.bench_args], cwd=REPO_ROOT)


def cmd_test(args: argparse.Namespace) -> int:
    """Lint, type-check, build the web client and install the browser its tests drive,
    then the whole suite (its fixtures start the test stack), and the multi-node test
    after it; with pytest arguments, pytest runs just those."""
    python = sys.executable
    print("==> web client: build if changed; Chromium for the browser tests", flush=True)
    ensure_web_client()
    ensure_chromium()
    pytest = [python, "-m", "pytest"]
    steps = [
        ("ruff", [python, "-m", "ruff", "check", "."]),
        ("mypy", [python, "-m", "mypy"]),
        ("import contracts", [venv_bin("lint-imports")]),
    ]
    if args.pytest_args:
        steps.append(("pytest", [*pytest, *args.pytest_args]))
    else:
        # The multi-node test runs a three-node Ray cluster and a second stack of its own:
        # on its own, once the suite's session stack has stopped, so they never share the
        # cores (tests/cluster).
        steps.append(("pytest", [*pytest, "-m", "not multinode"]))
        steps.append(("pytest, multi-node", [*pytest, "-m", "multinode", "tests/cluster"]))
    for name, cmd in steps:
        print(f"==> {name}: {' '.join([Path(cmd[0]).name, *cmd[1:]])}", flush=True)
        code = subprocess.call(cmd, cwd=REPO_ROOT)
        if code != 0:
            # pytest exits 5 when no test ran: that is a failure too.
            print(f"==> {name} failed (exit {code})", flush=True)
            return code or 1
    return 0
