"""The transactional outbox against the real PostgreSQL, relay, broker and a consumer."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from storage.db import Database
from storage.errors import InvalidInput, StorageError
from storage.events import HEADER_EPOCH, Event, header
from storage.outbox.rows import add_event
from storage.tracing import new_traceparent, reset_traceparent, set_traceparent
from tests.conftest import Consumers, Topics, applied, wait_until

pytestmark = pytest.mark.stack


class Rollback(Exception):
    pass


async def test_rolled_back_transaction_leaves_no_event(
    db: Database, topics: Topics, consumers: Consumers
) -> None:
    topic = await topics.create("test.delivery")
    consumers.start("tests.support.consumers:DeliveryRecorder")
    rolled_back = Event(type="test.event", aggregate_id="rb", payload={"n": 1})
    committed = Event(type="test.event", aggregate_id="rb", payload={"n": 2})

    async def write_then_fail() -> None:
        async with db.transaction() as conn:
            await add_event(conn, rolled_back, topic=topic)
            raise Rollback

    with pytest.raises(Rollback):
        await write_then_fail()
    async with db.transaction() as conn:
        await add_event(conn, committed, topic=topic)

    rows = await wait_until(
        lambda: applied(db, "test-delivery"),
        timeout_s=60,
        message="the committed event to be applied",
    )
    assert [row["event_id"] for row in rows] == [committed.event_id]
    count = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE event_id = $1", rolled_back.event_id
    )
    assert count == 0


async def test_published_message_carries_the_envelope_and_headers(
    db: Database, topics: Topics, deployed: object
) -> None:
    topic = await topics.create("test.envelope", partitions=2)
    traceparent = new_traceparent()
    token = set_traceparent(traceparent)
    try:
        event = Event(type="test.enveloped", aggregate_id="author-7", payload={"text": "hé"})
        async with db.transaction() as conn:
            await add_event(conn, event, topic=topic)
    finally:
        reset_traceparent(token)

    from deployments.settings import Settings

    settings = deployed
    assert isinstance(settings, Settings)
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, p) for p in range(2)])
        await reader.seek_to_beginning()
        records = await wait_until(
            lambda: _fetch(reader), timeout_s=30, message="the message on the topic"
        )
    finally:
        await reader.stop()
    record = records[0]
    assert record.key == b"author-7"
    body = json.loads(record.value)
    assert body["event_id"] == str(event.event_id)
    assert body["type"] == "test.enveloped"
    assert body["aggregate_id"] == "author-7"
    assert body["schema_version"] == 1
    assert body["traceparent"] == traceparent
    assert body["payload"] == {"text": "hé"}
    assert header(record.headers, "event_id") == str(event.event_id)
    assert header(record.headers, "type") == "test.enveloped"
    assert header(record.headers, "traceparent") == traceparent
    assert header(record.headers, HEADER_EPOCH) is not None


async def _fetch(reader: AIOKafkaConsumer) -> list[object]:
    batches = await reader.getmany(timeout_ms=500)
    return [record for records in batches.values() for record in records]


async def test_unknown_topic_is_refused_inside_the_writers_transaction(db: Database) -> None:
    marker = uuid.uuid4()

    async def write_to_unknown_topic() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO test_fixes VALUES ($1)", marker)
            await add_event(conn, Event(type="no.such.topic", aggregate_id="k", payload={}))

    with pytest.raises(InvalidInput, match="not registered"):
        await write_to_unknown_topic()
    # The writer's own change rolled back with it.
    assert await db.fetchval("SELECT count(*) FROM test_fixes WHERE event_id = $1", marker) == 0


async def test_add_event_outside_a_transaction_is_refused(db: Database) -> None:
    async with db.connection() as conn:
        with pytest.raises(StorageError, match="inside the transaction"):
            await add_event(conn, Event(type="test.event", aggregate_id="k", payload={}))
