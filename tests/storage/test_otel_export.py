"""Span export over OTLP/HTTP: spans reach a real receiver under the ids Nova propagates.

The receiver (`tests.support.otlp`) is a real HTTP server on 127.0.0.1 decoding the
exporter's protobuf requests. The last test publishes through a relay's send path to the
test stack's broker and applies through a consumer runner against its PostgreSQL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from aiokafka.structs import RecordMetadata, TopicPartition

from deployments.settings import Settings
from storage.db import Connection, Database
from storage.event_spans import record_applied, record_publishes
from storage.events import Event
from storage.kafka.consumer import Consumer
from storage.kafka.runner import ConsumerRunner
from storage.otel import OtlpExport, parse_headers, traces_url
from storage.outbox.relay import OutboxRelay
from storage.settings import StorageSettings
from storage.tracing import SERVER, SpanExport, export_spans, new_traceparent, stop_export
from tests.conftest import Topics
from tests.support.otlp import OtlpReceiver, otlp_receiver


def ids(traceparent: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture
def exporting(receiver: OtlpReceiver) -> Iterator[SpanExport]:
    """This process exports to `receiver`, as a Nova process with the setting does."""
    settings = StorageSettings(otlp_endpoint=receiver.url, otlp_headers="x-api-key=k%3Dv")
    export = export_spans(settings, service="nova-test", instance="test-1")
    assert export is not None
    try:
        yield export
    finally:
        stop_export()


def test_event_spans_are_children_of_the_traceparent_the_event_carries(
    receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    request = new_traceparent()
    trace_id, request_span = ids(request)
    event = Event(type="test.otel", aggregate_id="k", payload={}, traceparent=request)
    row = {
        "topic": "test.otel",
        "traceparent": request,
        "event_id": event.event_id,
        "type": event.type,
        "occurred_at": event.occurred_at,
    }
    ack = RecordMetadata("test.otel", 2, TopicPartition("test.otel", 2), 41, -1, 0, 0)
    started_ns = time.time_ns()
    record_publishes(exporting, [row], [ack], started_ns)
    record_applied(exporting, "test-group", [event], started_ns)
    assert exporting.flush(5)

    (producer,) = receiver.wait_for(lambda span: span.kind == "producer")
    (consumer,) = receiver.wait_for(lambda span: span.kind == "consumer")
    for span in (producer, consumer):
        assert span.trace_id == trace_id
        assert span.parent_span_id == request_span
        assert span.span_id not in (request_span, "")
        assert span.attributes["messaging.message.id"] == str(event.event_id)
        assert span.resource["service.name"] == "nova-test"
        assert span.resource["service.instance.id"] == "test-1"
        assert not span.failed
    assert producer.name == "send test.otel"
    assert producer.attributes["messaging.destination.partition.id"] == "2"
    assert producer.attributes["messaging.kafka.offset"] == 41
    assert consumer.name == "process test.otel"
    assert consumer.attributes["messaging.consumer.group.name"] == "test-group"
    assert producer.span_id != consumer.span_id
    assert receiver.headers[0]["x-api-key"] == "k=v"
    assert receiver.headers[0]["content-type"] == "application/x-protobuf"


def test_a_dead_lettered_event_has_a_failed_consumer_span(
    receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    event = Event(type="test.otel", aggregate_id="k", payload={}, traceparent=new_traceparent())
    record_applied(exporting, "test-group", [event], time.time_ns(), failure="dead-lettered: x")
    assert exporting.flush(5)
    (span,) = receiver.wait_for(lambda span: span.kind == "consumer")
    assert span.failed
    assert span.status_message == "dead-lettered: x"


def test_events_written_outside_any_trace_have_no_spans(
    receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    untraced = Event(type="test.otel", aggregate_id="k", payload={})
    traced = Event(type="test.otel", aggregate_id="k", payload={}, traceparent=new_traceparent())
    record_applied(exporting, "test-group", [untraced, traced], time.time_ns())
    assert exporting.flush(5)
    spans = receiver.wait_for(lambda span: span.kind == "consumer")
    assert [span.attributes["messaging.message.id"] for span in spans] == [str(traced.event_id)]
    assert spans[0].attributes["messaging.batch.message_count"] == 2


def test_a_span_started_as_a_traceparent_has_its_ids(
    receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    root = new_traceparent()
    child = new_traceparent(ids(root)[0])
    exporting.start("root", SERVER, parent=None, own=root).end()
    exporting.start("child", SERVER, parent=root, own=child).end()
    assert exporting.flush(5)
    spans = {span.name: span for span in receiver.wait_for(lambda span: True, count=2)}
    assert (spans["root"].trace_id, spans["root"].span_id) == ids(root)
    assert spans["root"].parent_span_id == ""
    assert (spans["child"].trace_id, spans["child"].span_id) == ids(child)
    assert spans["child"].parent_span_id == ids(root)[1]


def test_sampling_is_decided_by_the_trace_id_alone(receiver: OtlpReceiver) -> None:
    settings = StorageSettings(otlp_endpoint=receiver.url, otlp_sample_ratio=0.5)
    export = OtlpExport.from_settings(settings, service="nova-test")
    try:
        # The ratio keeps trace ids whose low 64 bits fall under ratio x 2^64.
        kept = "00-" + "a" * 16 + "0" * 15 + "1-" + "1" * 16 + "-01"
        dropped = "00-" + "a" * 16 + "f" * 16 + "-" + "2" * 16 + "-01"
        for traceparent in (kept, dropped, kept):
            export.start("op", SERVER, parent=None, own=traceparent).end()
        assert export.flush(5)
        spans = receiver.wait_for(lambda span: True, count=2)
        assert {span.trace_id for span in spans} == {ids(kept)[0]}
    finally:
        export.close()
    assert len(receiver.spans) == 2


def test_export_off_imports_no_sdk_and_records_nothing() -> None:
    """With no endpoint, the modules that make spans load and run without the SDK."""
    code = (
        "import sys\n"
        "import gateway.transport.tracing, storage.kafka.runner, storage.outbox.relay\n"
        "from storage.settings import StorageSettings\n"
        "from storage.tracing import export_spans, span_export, current_span\n"
        "assert export_spans(StorageSettings(), service='x') is None\n"
        "assert span_export() is None and current_span() is None\n"
        "loaded = [m for m in ('storage.otel', 'opentelemetry.exporter.otlp.proto.http')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_endpoint_and_headers_are_read_as_opentelemetry_reads_them() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://c.example/v1/traces") == "https://c.example/v1/traces"
    assert parse_headers("Authorization=Bearer%20x, dataset=nova") == {
        "authorization": "Bearer x",
        "dataset": "nova",
    }
    with pytest.raises(ValueError, match="NOVA_OTLP_HEADERS"):
        parse_headers("no-value")
    with pytest.raises(ValueError, match="NOVA_OTLP_SAMPLE_RATIO"):
        StorageSettings(otlp_sample_ratio=1.5)
    with pytest.raises(ValueError, match="NOVA_OTLP_ENDPOINT"):
        StorageSettings(otlp_endpoint="collector:4318")


class OtelRecorder(Consumer[Settings]):
    name = "test-otel"
    topics = ("test.otel",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.applied: list[Event] = []
        self.seen = asyncio.Event()

    async def apply(self, event: Event, conn: Connection) -> None:
        self.applied.append(event)

    async def after_commit(self, events: Sequence[Event]) -> None:
        self.seen.set()  # after the runner's commit, and so after its spans were recorded


@pytest.mark.stack
async def test_relay_and_consumer_spans_through_the_broker(
    deployed: Settings, db: Database, topics: Topics, receiver: OtlpReceiver, exporting: SpanExport
) -> None:
    """One event sent by a relay's publish path to the broker, fetched and applied by a
    consumer runner: its producer and consumer spans continue the request's trace. (The
    relay's send path is called directly: the deployed relays would race a whole relay
    for the outbox.)"""
    topic = await topics.create("test.otel", partitions=1)
    request = new_traceparent()
    event = Event(type="test.otel", aggregate_id="k", payload={"n": 1}, traceparent=request)
    row = {**event.to_dict(), "event_id": event.event_id, "occurred_at": event.occurred_at}
    row.update(id=0, topic=topic, headers=None)
    relay = OutboxRelay(db, deployed, name="test-otel-relay")
    try:
        await relay._ensure_connected()
        epoch = await db.fetchval("SELECT epoch FROM broker_state")
        await relay._publish(cast(Any, [row]), epoch)
    finally:
        await relay.close()

    consumer = OtelRecorder(deployed)
    runner = ConsumerRunner(consumer, db, member="test-otel-0")
    task = asyncio.create_task(runner.run())
    seen = asyncio.create_task(consumer.seen.wait())
    try:
        await asyncio.wait([task, seen], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for running in (task, seen):
            running.cancel()
        crashed = (await asyncio.gather(task, seen, return_exceptions=True))[0]
    assert not isinstance(crashed, Exception), crashed
    assert [e.event_id for e in consumer.applied] == [event.event_id]

    assert exporting.flush(5)
    trace_id, request_span = ids(request)
    spans = await asyncio.to_thread(
        receiver.wait_for,
        lambda span: span.attributes.get("messaging.message.id") == str(event.event_id),
        count=2,
    )
    by_kind = {span.kind: span for span in spans}
    assert set(by_kind) == {"producer", "consumer"}
    for span in spans:
        assert (span.trace_id, span.parent_span_id) == (trace_id, request_span)
        assert span.resource["ray.node.id"]  # the driver is a Ray worker here
    assert by_kind["producer"].attributes["messaging.destination.name"] == topic
    assert by_kind["consumer"].attributes["messaging.consumer.group.name"] == "test-otel"
    assert by_kind["consumer"].start_ns >= by_kind["producer"].start_ns
