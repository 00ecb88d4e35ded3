"""W3C trace context: one `traceparent` travels from the HTTP request to every consumer log.

The current context lives in a contextvar, so log records and new events pick it up
without being passed it explicitly. Spans for OpenTelemetry are optional and made under
the same ids (below, and `storage.otel`).
"""

from __future__ import annotations

import contextvars
import random
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from storage.settings import StorageSettings

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


def new_traceparent(trace_id: str | None = None) -> str:
    """A traceparent with a fresh span id, continuing `trace_id` when given.

    Ids come from `random`, as OpenTelemetry's default generator takes them: they must
    be unique, not secret, and `secrets` reads the kernel's entropy on every call (about
    1% of a busy gateway replica's time for one request's two ids)."""
    trace = trace_id or f"{random.getrandbits(128) or 1:032x}"
    return f"00-{trace}-{random.getrandbits(64) or 1:016x}-01"


def parse_traceparent(value: str | None) -> str | None:
    """Return `value` if it is a well-formed traceparent, else None (never trust headers)."""
    if not value:
        return None
    value = value.strip().lower()
    match = _TRACEPARENT.match(value)
    if not match or match[1] == "0" * 32 or match[2] == "0" * 16:
        return None
    return value


def trace_id_of(traceparent: str | None) -> str | None:
    return traceparent.split("-")[1] if traceparent else None


def current_traceparent() -> str | None:
    return _current.get()


def set_traceparent(value: str | None) -> contextvars.Token[str | None]:
    return _current.set(value)


def reset_traceparent(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


# -- spans ------------------------------------------------------------------------------
#
# When `NOVA_OTLP_ENDPOINT` is set, a process that calls `export_spans` sends spans made
# under these same ids to an OpenTelemetry collector (`storage.otel`). Without it nothing
# is imported and `span_export()` is None: call sites check that one global and do nothing.

SERVER = "server"
PRODUCER = "producer"
CONSUMER = "consumer"

AttributeValue = str | bool | int | float | Sequence[str]


class OpenSpan(Protocol):
    """A span being recorded; ended exactly once."""

    def set(self, key: str, value: AttributeValue) -> None: ...

    def rename(self, name: str) -> None: ...

    def fail(self, description: str) -> None:
        """Mark the span's operation as failed, with why."""

    def end(self, end_ns: int | None = None) -> None: ...


class SpanExport(Protocol):
    """Where a process's spans go."""

    def start(
        self,
        name: str,
        kind: str,
        *,
        parent: str | None,
        own: str | None = None,
        start_ns: int | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> OpenSpan:
        """A span under the `parent` traceparent. `own` is the traceparent the span
        itself is known by (its trace and span ids, as logged); without it, a child of
        `parent` with a span id of its own."""

    def flush(self, timeout_s: float) -> bool: ...

    def close(self) -> None: ...


_export: SpanExport | None = None
_current_span: contextvars.ContextVar[OpenSpan | None] = contextvars.ContextVar(
    "nova_span", default=None
)


def span_export() -> SpanExport | None:
    """This process's span export, or None when export is off."""
    return _export


def export_spans(
    settings: StorageSettings, *, service: str, instance: str | None = None
) -> SpanExport | None:
    """Start exporting this process's spans as `service` if settings name an OTLP
    endpoint; once per process (later calls return the export already running)."""
    global _export
    if _export is None and settings.otlp_endpoint:
        from storage.otel import OtlpExport  # the SDK is imported only when export is on

        _export = OtlpExport.from_settings(settings, service=service, instance=instance)
    return _export


def stop_export() -> None:
    """Flush and stop this process's span export, if any."""
    global _export
    export, _export = _export, None
    if export is not None:
        export.close()


def current_span() -> OpenSpan | None:
    """The span of the request being handled, when one is being exported."""
    return _current_span.get()


def set_current_span(span: OpenSpan | None) -> contextvars.Token[OpenSpan | None]:
    return _current_span.set(span)


def reset_current_span(token: contextvars.Token[OpenSpan | None]) -> None:
    _current_span.reset(token)
