"""Spans exported over OTLP/HTTP, under the trace and span ids Nova already logs.

Imported only when `NOVA_OTLP_ENDPOINT` is set (`storage.tracing.export_spans`). Nova
chooses its ids itself: they are in every log line, every outbox event and the gateway's
`traceparent` response header, export or not. Spans are still made by the SDK's tracer,
so its sampler, attribute limits and batch processor apply, but the tracer's id
generator hands it the ids Nova chose (`_ChosenIds`): a request's server span is the
span of the `traceparent` the gateway logged and answered with.

Each process has its own tracer provider, not the global one: Ray's own OpenTelemetry
use is left alone. Spans are batched and sent by the SDK's worker thread; a collector
that is down or slow costs dropped spans (the queue is bounded), never a blocked request.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from storage.settings import StorageSettings
from storage.tracing import CONSUMER, PRODUCER, SERVER, AttributeValue, OpenSpan

_KINDS = {SERVER: SpanKind.SERVER, PRODUCER: SpanKind.PRODUCER, CONSUMER: SpanKind.CONSUMER}
TRACES_PATH = "/v1/traces"


class _ChosenIds(IdGenerator):
    """The ids Nova chose for the span being started on this thread, random otherwise."""

    def __init__(self) -> None:
        self._chosen = threading.local()
        self._random = RandomIdGenerator()

    def choose(self, ids: tuple[int, int] | None) -> None:
        self._chosen.ids = ids

    def generate_trace_id(self) -> int:
        ids = getattr(self._chosen, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        ids = getattr(self._chosen, "ids", None)
        return ids[1] if ids else self._random.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return True  # Nova's trace ids are 128 random bits (`storage.tracing.new_traceparent`)


class _Span:
    """An SDK span behind `storage.tracing.OpenSpan`, so callers never import the SDK.
    Attributes set while it runs are handed to the SDK at once when it ends (each call
    into the SDK's span takes its lock)."""

    __slots__ = ("_attributes", "_span")

    def __init__(self, span: trace_api.Span) -> None:
        self._span = span
        self._attributes: dict[str, AttributeValue] = {}

    def set(self, key: str, value: AttributeValue) -> None:
        self._attributes[key] = value

    def rename(self, name: str) -> None:
        self._span.update_name(name)

    def fail(self, description: str) -> None:
        self._span.set_status(Status(StatusCode.ERROR, description))

    def end(self, end_ns: int | None = None) -> None:
        if self._attributes:
            self._span.set_attributes(self._attributes)
        self._span.end(end_time=end_ns)


class _Unsampled:
    """A span of a trace the sample leaves out: nothing to record."""

    __slots__ = ()

    def set(self, key: str, value: AttributeValue) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def fail(self, description: str) -> None:
        pass

    def end(self, end_ns: int | None = None) -> None:
        pass


_UNSAMPLED = _Unsampled()
_LOW_64_BITS = (1 << 64) - 1


class OtlpExport:
    """One process's spans: a tracer with Nova's ids, batched to an OTLP/HTTP collector."""

    def __init__(
        self,
        resource: Resource,
        processor: SpanProcessor,
        *,
        sample_ratio: float = 1.0,
    ) -> None:
        self._ids = _ChosenIds()
        sampler = TraceIdRatioBased(sample_ratio)
        self._sample_bound = sampler.bound
        self._provider = TracerProvider(
            resource=resource,
            sampler=sampler,
            id_generator=self._ids,
            meter_provider=NoOpMeterProvider(),
        )
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("nova", _nova_version())

    @classmethod
    def from_settings(
        cls, settings: StorageSettings, *, service: str, instance: str | None = None
    ) -> OtlpExport:
        """Export to `settings.otlp_endpoint`. The exporter still reads the standard
        `OTEL_EXPORTER_OTLP_*` variables for what Nova does not set (TLS files,
        compression, timeout, and headers when `NOVA_OTLP_HEADERS` is unset), and the
        batch processor `OTEL_BSP_*`."""
        assert settings.otlp_endpoint, "export needs NOVA_OTLP_ENDPOINT"
        exporter = OTLPSpanExporter(
            endpoint=traces_url(settings.otlp_endpoint),
            headers=parse_headers(settings.otlp_headers) if settings.otlp_headers else None,
            meter_provider=NoOpMeterProvider(),
        )
        return cls(
            process_resource(service, instance),
            BatchSpanProcessor(exporter),
            sample_ratio=settings.otlp_sample_ratio,
        )

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
        own_ids, parent_ids = _ids(own), _ids(parent)
        known = parent_ids or own_ids
        if known is not None and known[0] & _LOW_64_BITS >= self._sample_bound:
            return _UNSAMPLED  # the sampler's own decision, without building a span for it
        context = None
        if parent_ids is not None:
            parent_context = trace_api.SpanContext(
                *parent_ids, is_remote=True, trace_flags=trace_api.TraceFlags(1)
            )
            context = trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent_context))
        self._ids.choose(own_ids)
        try:
            span = self._tracer.start_span(
                name, context, _KINDS[kind], attributes, start_time=start_ns
            )
        finally:
            self._ids.choose(None)
        return _Span(span)

    def flush(self, timeout_s: float) -> bool:
        return self._provider.force_flush(int(timeout_s * 1000))

    def close(self) -> None:
        self._provider.shutdown()


def traces_url(endpoint: str) -> str:
    """The collector's base URL with the traces path, as `OTEL_EXPORTER_OTLP_ENDPOINT` is
    read; a URL already ending in it is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def parse_headers(text: str) -> dict[str, str]:
    """`name=value,name2=value2`, values URL-encoded, as `OTEL_EXPORTER_OTLP_HEADERS`."""
    headers = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"NOVA_OTLP_HEADERS: {item.strip()!r} is not name=value")
        headers[unquote(name.strip()).lower()] = unquote(value.strip())
    return headers


def process_resource(service: str, instance: str | None) -> Resource:
    """Who sends the spans: the service, this process and where Ray runs it.
    `OTEL_RESOURCE_ATTRIBUTES` adds to these; it does not override them."""
    host = socket.gethostname()
    attributes: dict[str, Any] = {
        "service.name": service,
        "service.namespace": "nova",
        "service.version": _nova_version(),
        "service.instance.id": instance or f"{host}:{os.getpid()}",
        "host.name": host,
        "process.pid": os.getpid(),
        **_ray_attributes(),
    }
    return Resource.create(attributes)


def _ray_attributes() -> dict[str, str]:
    import ray

    if not ray.is_initialized():
        return {}
    context = ray.get_runtime_context()
    actor_id = context.get_actor_id()  # None in a driver, which has no actor name to ask
    found = {
        "ray.node.id": context.get_node_id(),
        "ray.job.id": context.get_job_id(),
        "ray.actor.id": actor_id,
        "ray.actor.name": context.get_actor_name() if actor_id else None,
    }
    return {key: value for key, value in found.items() if value}


def _nova_version() -> str:
    try:
        return importlib.metadata.version("nova")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _ids(traceparent: str | None) -> tuple[int, int] | None:
    """(trace id, span id) of a well-formed traceparent (Nova's own are)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4:
        return None
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (trace_id, span_id) if trace_id and span_id else None
