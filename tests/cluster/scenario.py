"""Nova on a three-node Ray cluster on this machine, in a process of its own (a process
holds one Ray connection, and pytest's is the session's test cluster):

1. `ray.cluster_utils.Cluster`: a head and two worker nodes on 127.0.0.1
   (`tests.cluster.nodes`), and a second embedded stack (PostgreSQL, Redis, the broker, an
   SMTP sink) in its own state dir on port base 23000, with that cluster as its Ray;
2. Nova deployed onto it as `nova deploy` does, with the gateway autoscaled between 1 and
   3 replicas (short delays, so a test sees it), the Ranker and FeatureStore between 1
   and 2;
3. a worker node holding shards killed outright under load (`tests.cluster.node_loss`);
4. a burst of concurrent reads, and the calm after it (`tests.cluster.burst`).

Everything it started is stopped in `finally`, within bounds. The results are printed as
one line, `RESULT {json}`, last. Run it alone with
`.venv/bin/python -m tests.cluster.scenario` (under the stack lock).

The nodes share one address, so only the head runs Serve's HAProxy on the HTTP port
(`proxy_location="HeadOnly"`, as behind a load balancer); ingress replicas on any node
serve it. gRPC ingress is off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deployments.settings import TEST_PREFIX
from deployments.stack import Layout, Ray, Stack, layout_for_tests

PORT_BASE = 23_000  # away from the dev stack (20000) and the session's test stack (21000)
AUTOSCALING_REPORTS = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "2",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "2",
}


def default_state_dir() -> Path:
    """Short: each node's HAProxy keeps its admin socket in `haproxy/<node id>/` below it
    (the id is 56 characters), and a socket path is at most 97. Reachable by the
    `postgres` user as root (pytest's tmp dirs are not)."""
    root = Path("/var/lib") if os.geteuid() == 0 else Path(tempfile.gettempdir())
    return root / "nova-mn"


def scenario_layout(state_dir: Path, port_base: int = PORT_BASE) -> Layout:
    """The scenario's stack: its own state dir and ports (HTTP + 800, dashboard + 265),
    no gRPC ingress."""
    return Layout(
        name="multinode",
        state_dir=state_dir,
        port_base=port_base,
        http_port=port_base + 800,
        dashboard_port=port_base + 265,
        grpc_port=0,
    )


def prepare_environment(layout: Layout) -> None:
    """Only this scenario's Nova and Ray variables, set before Ray is imported (it reads
    them then): loopback, the layout's token, Serve's ports and files, Ray's temp dir.

    The test helpers import `tests.conftest`, which applies the Ray environment of
    `layout_for_tests()` (read from `NOVA_TEST_*`): those name this layout too."""
    for name in [n for n in os.environ if n.startswith(("NOVA_", "RAY_"))]:
        del os.environ[name]
    os.environ.update(
        {
            f"{TEST_PREFIX}STATE_DIR": str(layout.state_dir),
            f"{TEST_PREFIX}PORT_BASE": str(layout.port_base),
            f"{TEST_PREFIX}HTTP_PORT": str(layout.http_port),
            f"{TEST_PREFIX}DASHBOARD_PORT": str(layout.dashboard_port),
            f"{TEST_PREFIX}GRPC_PORT": str(layout.grpc_port),
        }
    )
    assert Ray(layout_for_tests()).environment() == Ray(layout).environment()
    os.environ.update(Ray(layout).environment())
    os.environ["RAY_TMPDIR"] = str(Ray(layout).temp_dir)
    # Replicas and handles report their requests in flight to Serve's autoscaler every
    # 2 s instead of 10, so a burst of a minute shows it acting.
    os.environ.update(AUTOSCALING_REPORTS)


def clean_up(layout: Layout) -> None:
    """Whatever a run of this scenario left behind: its stack's servers, its Ray
    processes (found by the layout's temp dir and ports), its state."""
    Stack(layout, environ={"RAY_ADDRESS": "none"}).down()
    Ray(layout).stop()
    if layout.state_dir.exists():
        shutil.rmtree(layout.state_dir)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM from the test's timeout: unwind, so `finally` stops what was started."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument("--port-base", type=int, default=PORT_BASE)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    layout = scenario_layout(args.state_dir, args.port_base)
    prepare_environment(layout)
    clean_up(layout)
    # Ray is imported from here on.
    from tests.cluster.run import run

    started = time.monotonic()
    try:
        results = run(layout)
    finally:
        Ray(layout).stop()  # whatever of the cluster outlived its shutdown
    results["scenario_s"] = round(time.monotonic() - started, 1)
    print("RESULT " + json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
