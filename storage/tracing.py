"""W3C trace context: one `traceparent` travels from the HTTP request to every consumer log.

The current context lives in a contextvar, so log records and new events pick it up
without being passed it explicitly.
"""

from __future__ import annotations

import contextvars
import random
import re

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
