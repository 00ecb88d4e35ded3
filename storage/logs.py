"""JSON log lines carrying the current trace id, one format for every Nova process."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from storage.tracing import current_traceparent, trace_id_of


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "trace_id": trace_id_of(current_traceparent()),
            "process": record.process,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send Nova's loggers to stderr as JSON (Ray collects worker stderr into its logs).

    The process's own stderr, not `sys.stderr`: Serve replicas replace that with a stream
    into Serve's logger when `RAY_SERVE_LOG_TO_STDERR=0`, which would wrap each JSON line
    in Serve's format."""
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("storage", "actors", "deployments", "gateway", "ranking", "nova"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
