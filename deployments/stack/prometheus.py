"""The embedded Prometheus: Debian's, on loopback, scraping Ray's metrics through the
service-discovery file Ray's dashboard writes, and evaluating Nova's rules.

Ray's metrics agent on every node exports Nova's `ray.util.metrics` (as `ray_nova_*`) next
to Ray's own; the head lists those agents in `prom_metrics_service_discovery.json` in its
session dir, so a node that joins is scraped without a config change. Ray's dashboard reads
`RAY_PROMETHEUS_HOST` (`Ray.environment`) to draw from it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from typing import Any

from deployments.observability import RULES_FILE
from deployments.stack.daemon import Daemon
from deployments.stack.debian import ensure_prometheus
from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    log_tail,
    pid_alive,
    private_dir,
    private_file,
    run,
)
from deployments.stack.ray_head import Ray

# Long enough to look back over an incident; short enough that the TSDB of a one-machine
# stack (about a thousand Nova series and Ray's own, every 10 s) stays small.
RETENTION = "2d"
SCRAPE_INTERVAL = "10s"  # Ray's agents refresh what they export every 10 s
# Ray rewrites the discovery file when nodes come and go, and a Ray restart makes a new
# session dir (`session_latest` then points elsewhere, which a file watch does not follow):
# read it again this often as well.
DISCOVERY_REFRESH = "30s"
# Ray's name for it (`ray._private.ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE`), not
# imported: Ray reads its environment when first imported, and the stack imports Ray late.
DISCOVERY_FILE_NAME = "prom_metrics_service_discovery.json"
# It replays its write-ahead log before it serves: seconds for two days of one stack.
READY_TIMEOUT_S = 60
# Loopback needs no proxy, whatever `http_proxy` the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Prometheus(Daemon):
    """Debian's `prometheus` for one stack's layout; its TSDB and config under
    `<state dir>/prometheus`, its API and UI at `url` (loopback only).

    `start()` is idempotent: on a running server it rewrites the config and reloads it,
    so changed rules apply without losing the data.
    """

    what = "Prometheus"

    def __init__(self, layout: Layout) -> None:
        super().__init__(
            layout.prometheus_port,
            layout.path("prometheus", "prometheus.pid"),
            layout.path("logs", "prometheus.log"),
        )
        self.layout = layout
        self.config_file = layout.path("prometheus", "prometheus.yml")
        self.data_dir = layout.path("prometheus", "data")
        self.discovery_file = Ray(layout).temp_dir / "session_latest" / DISCOVERY_FILE_NAME

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> None:
        if self.running():
            self.reload()
            return
        super().start()
        self._wait_until_ready(timeout_s=READY_TIMEOUT_S)

    def ready(self) -> bool:
        """Serving queries: it listens before it has replayed its write-ahead log, and
        answers 503 until then."""
        try:
            with _DIRECT.open(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:  # refused, 503 (HTTPError), timed out
            return False

    def _wait_until_ready(self, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise StackError(
                    f"Prometheus at {self.url} was not ready within {timeout_s:.0f}s\n"
                    f"--- {self.log_file} ---\n{log_tail(self.log_file)}"
                )
            time.sleep(0.2)

    def reload(self) -> None:
        """Write the config again and have the running server read it (SIGHUP)."""
        pid = pid_alive(self.pid_file)
        if pid is None:
            return
        self.prepare()
        os.kill(pid, signal.SIGHUP)

    def prepare(self) -> None:
        """Write the config, and refuse it (with promtool's reasons) if it or the rules are
        wrong: a server would log that and carry on with the old rules, or not start."""
        ensure_prometheus()
        private_dir(self.data_dir)
        private_file(self.config_file, json.dumps(self.config(), indent=2) + "\n")
        run(["promtool", "check", "config", str(self.config_file)], what="promtool check config")

    def config(self) -> dict[str, Any]:
        """prometheus.yml (JSON is YAML): Ray's nodes by file discovery, itself, the rules."""
        return {
            "global": {
                "scrape_interval": SCRAPE_INTERVAL,
                "evaluation_interval": SCRAPE_INTERVAL,
            },
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [
                {
                    "job_name": "ray",
                    "file_sd_configs": [
                        {
                            "files": [str(self.discovery_file)],
                            "refresh_interval": DISCOVERY_REFRESH,
                        }
                    ],
                },
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [f"{LOCALHOST}:{self.port}"]}],
                },
            ],
        }

    def command(self) -> list[str]:
        return [
            "prometheus",
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address={LOCALHOST}:{self.port}",
        ]
