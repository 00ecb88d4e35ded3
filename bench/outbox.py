"""Outbox benchmark: commit -> relay -> Kafka -> idempotent consumer, against direct Kafka.

    cd /work/main && .venv/bin/python -m bench.outbox

Needs the dev stack (`nova up`). In one run, with the same messages (same envelope, same
sizes, same 100 keys) on both paths:

* Nova: events are written through the transactional outbox, one per transaction, paced at
  500/s by several writers; the relays publish them to `bench.outbox` and a
  `bench.consumers.LatencyConsumer` Ray actor applies each in its ledger transaction,
  recording `clock_timestamp()`. Latency = applied_at - commit time (both wall clock, one
  host). Then the same count as fast as 20 writers can commit: end-to-end throughput.
* Baseline: aiokafka directly (acks=all, idempotence off) to `bench.direct`, read back by a
  plain consumer in this process. Latency = receive time - send time stamped in the message.

Prints one JSON document with both, their ratios, the targets and whether they were met.
Every loop is bounded in count and time; the bench consumer actor is killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.consumers import BENCH_APPLIED_DDL, LatencyConsumer
from bench.goals import Goal
from bench.harness import StackNotUp, load_stack_env, ratio, report, run_paced, summarize
from deployments.settings import Settings
from storage.db import Database
from storage.events import HEADER_EPOCH, HEADER_EVENT_ID, HEADER_TYPE, Event
from storage.kafka.clients import TopicAdmin, end_offsets, make_consumer, make_producer
from storage.kafka.topics import Topic, capped, register_topics
from storage.outbox.rows import add_event

SCENARIO = "outbox"
NOVA_TOPIC = "bench.outbox"
DIRECT_TOPIC = "bench.direct"
PARTITIONS = 8  # capped like Nova's own topics by NOVA_KAFKA_MAX_PARTITIONS (`partitions`)
KEYS = 100
EVENT_TYPE = "bench.event"
CONSUMER_PATH = "bench.consumers:LatencyConsumer"
PAD = "x" * 64

DEFAULT_EVENTS = 10_000
DEFAULT_RATE_PER_S = 500.0
PACED_WRITERS = 16
MAX_WRITERS = 20
WARMUP_WAIT_S = 60.0
APPLY_WAIT_S = 120.0
SETTLE_S = 1.0
POLL_S = 0.2

TARGET_P99_MS = 50.0
TARGET_P99_RATIO = 3.0


def partitions(settings: Settings) -> int:
    """The bench topics' partition count: as many as Nova would give a topic of `PARTITIONS`.

    The embedded broker's fetches cost CPU per partition, so the embedded stack caps every
    topic (`NOVA_KAFKA_MAX_PARTITIONS`); both bench topics get the same cap, so the two
    paths are measured on the broker Nova actually runs on.
    """
    return capped(PARTITIONS, settings.kafka_max_partitions)


def key_for(index: int) -> str:
    return f"bench-key-{index % KEYS:03d}"


def make_event(run_id: str, phase: str, index: int, sent_at: float) -> Event:
    """The one message shape both paths carry (payload holds the send time for the baseline)."""
    return Event(
        type=EVENT_TYPE,
        aggregate_id=key_for(index),
        payload={"run": run_id, "phase": phase, "seq": index, "sent_at": sent_at, "pad": PAD},
    )


def kafka_headers(event: Event) -> list[tuple[str, bytes]]:
    """The headers the relay puts on a message, so both paths send the same bytes."""
    return [
        (HEADER_EVENT_ID, str(event.event_id).encode()),
        (HEADER_TYPE, event.type.encode()),
        (HEADER_EPOCH, b"0"),
    ]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# -- setup -------------------------------------------------------------------------------


async def prepare(db: Database, settings: Settings) -> dict[str, int]:
    """Register and create the topics, create and empty `bench_applied`.

    Returns topics whose partition count in Kafka differs from what the bench wants.
    """
    async with db.transaction() as conn:
        await register_topics(conn, [Topic(NOVA_TOPIC, partitions(settings), "bench key")])
    async with db.connection() as conn:
        await conn.execute(BENCH_APPLIED_DDL)
        await conn.execute("TRUNCATE bench_applied")
    admin = TopicAdmin(settings, client_id="bench-admin")
    try:
        count = partitions(settings)
        return await admin.ensure({NOVA_TOPIC: count, DIRECT_TOPIC: count})
    finally:
        await admin.close()


async def _actor_status(handle: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    try:
        status: dict[str, Any] = await asyncio.wait_for(handle.status.remote(), timeout_s)
    except Exception as exc:  # status is diagnostics only
        return {"error": f"{type(exc).__name__}: {exc}"}
    return status


def kill_lingering_consumer() -> None:
    """Kill a bench consumer left running by an interrupted run (its offsets are reset next)."""
    import ray

    from deployments.workers import NAMESPACE, consumer_member_name

    try:
        handle = ray.get_actor(consumer_member_name(CONSUMER_PATH, 0), namespace=NAMESPACE)
    except ValueError:
        return
    ray.kill(handle, no_restart=True)


async def skip_backlog(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """Commit the end offsets of bench.outbox for the bench group, so that its consumer
    starts with this run's events instead of replaying what earlier runs left in the log.

    Joins the group briefly (the embedded broker refuses commits from outside a group);
    call it while no bench consumer runs. Returns the committed offset per partition.
    """
    reader = make_consumer(
        settings,
        group_id=LatencyConsumer.name,
        client_id="bench-reset",
        topics=LatencyConsumer.topics,
    )
    await _start(reader, settings.kafka_request_timeout_ms / 1000)
    try:
        deadline = time.monotonic() + timeout_s
        while not reader.assignment():
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"no partitions of {NOVA_TOPIC} assigned within {timeout_s:.0f}s"
                )
            await asyncio.wait_for(reader.getmany(timeout_ms=100, max_records=1), timeout_s)
        assigned = sorted(reader.assignment())
        ends = await end_offsets(reader, assigned, settings.kafka_request_timeout_ms / 1000)
        await asyncio.wait_for(reader.commit(ends), settings.kafka_request_timeout_ms / 1000)
    finally:
        await asyncio.wait_for(reader.stop(), 10)
    return {f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(ends.items())}


RELAY_COUNTERS = ("published", "batches", "resets_detected", "redriven", "errors")


async def relay_snapshot(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each relay's status (diagnostics: resets and re-drives during the run show here)."""
    import ray

    from deployments.workers import NAMESPACE, relay_name

    snapshot: dict[str, dict[str, Any]] = {}
    for index in range(settings.relay_count):
        try:
            handle = ray.get_actor(relay_name(index), namespace=NAMESPACE)
        except ValueError:
            snapshot[relay_name(index)] = {"error": "not running"}
            continue
        snapshot[relay_name(index)] = await _actor_status(handle)
    return snapshot


def relay_delta(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Counter increments over the run, summed over relays, plus each relay's last error."""
    totals = dict.fromkeys(RELAY_COUNTERS, 0)
    last_errors: dict[str, Any] = {}
    for name, status in after.items():
        for counter in RELAY_COUNTERS:
            now = status.get(counter)
            then = before.get(name, {}).get(counter, 0)
            if isinstance(now, int) and isinstance(then, int):
                totals[counter] += now - then
        if status.get("errors") != before.get(name, {}).get("errors"):
            last_errors[name] = status.get("last_error")
    return {**totals, "last_errors": last_errors}


async def applied_rows(
    db: Database, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, float]]:
    """For each of `ids` found in bench_applied: (rows, first applied_at as epoch seconds)."""
    rows = await db.fetchrow(
        """
        SELECT coalesce(array_agg(event_id), '{}') AS ids,
               coalesce(array_agg(n), '{}') AS counts,
               coalesce(array_agg(first_applied), '{}') AS firsts
        FROM (
            SELECT a.event_id, count(*) AS n,
                   EXTRACT(EPOCH FROM min(a.applied_at))::float8 AS first_applied
            FROM bench_applied a JOIN unnest($1::uuid[]) AS wanted(event_id)
                 ON a.event_id = wanted.event_id
            GROUP BY a.event_id
        ) per_event
        """,
        list(ids),
    )
    return {
        event_id: (int(count), float(first))
        for event_id, count, first in zip(rows["ids"], rows["counts"], rows["firsts"], strict=True)
    }


async def count_applied(db: Database, ids: Sequence[uuid.UUID]) -> int:
    count: int = await db.fetchval(
        """
        SELECT count(DISTINCT a.event_id)
        FROM bench_applied a JOIN unnest($1::uuid[]) AS wanted(event_id)
             ON a.event_id = wanted.event_id
        """,
        list(ids),
    )
    return count


async def wait_applied(db: Database, ids: Sequence[uuid.UUID], timeout_s: float) -> bool:
    """Poll until every id is in bench_applied, at most `timeout_s`; True if all arrived."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await count_applied(db, ids) >= len(ids):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)


async def warm_up(db: Database, run_id: str, consumer: Any) -> float:
    """Write one event and wait until the consumer has applied it (it has joined its group)."""
    started = time.monotonic()
    event = make_event(run_id, "warmup", 0, time.time())
    async with db.transaction() as conn:
        await add_event(conn, event, topic=NOVA_TOPIC)
    if not await wait_applied(db, [event.event_id], WARMUP_WAIT_S):
        status = await _actor_status(consumer)
        raise RuntimeError(
            f"the bench consumer did not apply a warm-up event within {WARMUP_WAIT_S:.0f}s; "
            f"consumer status: {json.dumps(status, default=str)}"
        )
    return time.monotonic() - started


async def nova_phase(
    db: Database, run_id: str, phase: str, *, events: int, rate_per_s: float | None, writers: int
) -> dict[str, Any]:
    """Write `events` through the outbox, wait for them to be applied, measure."""
    commits: dict[uuid.UUID, float] = {}

    async def write(index: int) -> None:
        event = make_event(run_id, phase, index, time.time())
        async with db.transaction() as conn:
            await add_event(conn, event, topic=NOVA_TOPIC)
        commits[event.event_id] = time.time()

    deadline_s = (events / rate_per_s if rate_per_s else 0.0) + 60.0
    written = await run_paced(
        write, count=events, rate_per_s=rate_per_s, concurrency=writers, deadline_s=deadline_s
    )
    ids = list(commits)
    wait_started = time.monotonic()
    all_applied = await wait_applied(db, ids, APPLY_WAIT_S)
    drain_s = time.monotonic() - wait_started
    await asyncio.sleep(SETTLE_S)  # late double applies, if any, show up in the counts
    applied = await applied_rows(db, ids)
    latencies = [(first - commits[event_id]) * 1000 for event_id, (_, first) in applied.items()]
    rows = sum(count for count, _ in applied.values())
    first_commit = min(commits.values()) if commits else None
    last_commit = max(commits.values()) if commits else None
    last_applied = max((first for _, first in applied.values()), default=None)
    commit_span = (last_commit - first_commit) if first_commit and last_commit else None
    e2e_span = (last_applied - first_commit) if first_commit and last_applied else None
    return {
        "writers": writers,
        "target_rate_per_s": rate_per_s,
        "written": written.to_dict(),
        "committed": len(ids),
        "all_applied": all_applied,
        "applied_rows": rows,
        "distinct_applied": len(applied),
        "double_applied": rows - len(applied),
        "drain_after_last_commit_s": round(drain_s, 3),
        "latency_ms": summarize(latencies),
        "commit_rate_per_s": _round(len(ids) / commit_span if commit_span else None),
        "end_to_end_per_s": _round(len(applied) / e2e_span if e2e_span else None),
    }


# -- the direct Kafka baseline ------------------------------------------------------------


async def _start(client: AIOKafkaProducer | AIOKafkaConsumer, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except BaseException:
        await asyncio.wait_for(client.stop(), 5)
        raise


async def direct_phase(
    producer: AIOKafkaProducer,
    reader: AIOKafkaConsumer,
    settings: Settings,
    run_id: str,
    phase: str,
    *,
    events: int,
    rate_per_s: float | None,
    senders: int,
) -> dict[str, Any]:
    """Produce `events` to bench.direct and read them back; latency from a stamp in each."""
    timeout_s = settings.kafka_request_timeout_ms / 1000
    assigned = [TopicPartition(DIRECT_TOPIC, p) for p in range(partitions(settings))]
    reader.assign(assigned)
    for tp, offset in (await end_offsets(reader, assigned, timeout_s)).items():
        reader.seek(tp, offset)

    sends: dict[int, float] = {}
    received: dict[int, float] = {}
    duplicates = 0
    producing_done = asyncio.Event()

    async def receive() -> None:
        nonlocal duplicates
        deadline = None
        while len(received) < events:
            if producing_done.is_set():
                deadline = deadline or time.monotonic() + APPLY_WAIT_S
                if time.monotonic() >= deadline:
                    return
            batches = await asyncio.wait_for(
                reader.getmany(timeout_ms=100, max_records=1000), timeout_s
            )
            now = time.time()
            for records in batches.values():
                for record in records:
                    payload = json.loads(record.value)["payload"]
                    if payload.get("run") != run_id or payload.get("phase") != phase:
                        continue
                    seq = int(payload["seq"])
                    if seq in received:
                        duplicates += 1
                    else:
                        received[seq] = now - float(payload["sent_at"])

    async def send(index: int) -> None:
        sent_at = time.time()
        event = make_event(run_id, phase, index, sent_at)
        await asyncio.wait_for(
            producer.send_and_wait(
                DIRECT_TOPIC,
                value=event.encode(),
                key=event.aggregate_id.encode(),
                headers=kafka_headers(event),
            ),
            2 * timeout_s,
        )
        sends[index] = sent_at

    receiver = asyncio.create_task(receive())
    deadline_s = (events / rate_per_s if rate_per_s else 0.0) + 60.0
    try:
        written = await run_paced(
            send, count=events, rate_per_s=rate_per_s, concurrency=senders, deadline_s=deadline_s
        )
        producing_done.set()
        await asyncio.wait_for(receiver, APPLY_WAIT_S + 2 * timeout_s)
    finally:
        if not receiver.done():
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
    latencies = [received[seq] * 1000 for seq in received if seq in sends]
    first_send = min(sends.values()) if sends else None
    last_receive = max((sends[s] + received[s] for s in received if s in sends), default=None)
    last_send = max(sends.values()) if sends else None
    send_span = (last_send - first_send) if first_send and last_send else None
    e2e_span = (last_receive - first_send) if first_send and last_receive else None
    return {
        "senders": senders,
        "target_rate_per_s": rate_per_s,
        "written": written.to_dict(),
        "acknowledged": len(sends),
        "received": len(received),
        "duplicates": duplicates,
        "all_received": len(received) >= events,
        "latency_ms": summarize(latencies),
        "produce_rate_per_s": _round(len(sends) / send_span if send_span else None),
        "end_to_end_per_s": _round(len(received) / e2e_span if e2e_span else None),
    }


async def baseline(settings: Settings, run_id: str, events: int, rate: float) -> dict[str, Any]:
    # Nova's consumers fetch with the busy wait while records flow (`storage.kafka.fetch_pacing`);
    # the baseline's reader gets the same wait, so both read the broker the same way.
    direct = settings.replace(
        kafka_idempotence=False, kafka_fetch_max_wait_ms=settings.kafka_fetch_busy_wait
    )
    timeout_s = settings.kafka_request_timeout_ms / 1000
    producer = make_producer(direct, client_id="bench-direct")
    reader = make_consumer(direct, group_id=None, client_id="bench-direct-reader")
    await _start(producer, timeout_s)
    try:
        await _start(reader, timeout_s)
        try:
            paced = await direct_phase(
                producer,
                reader,
                settings,
                run_id,
                "paced",
                events=events,
                rate_per_s=rate,
                senders=PACED_WRITERS,
            )
            fastest = await direct_phase(
                producer,
                reader,
                settings,
                run_id,
                "max",
                events=events,
                rate_per_s=None,
                senders=MAX_WRITERS,
            )
        finally:
            await asyncio.wait_for(reader.stop(), 10)
    finally:
        await asyncio.wait_for(producer.stop(), 10)
    return {
        "acks": "all",
        "idempotence": False,
        "clients": "storage.kafka.clients.make_producer / make_consumer (the relay's and "
        "consumers' settings; group_id=None, all partitions assigned)",
        "topic": DIRECT_TOPIC,
        "partitions": partitions(settings),
        "paced": paced,
        "max_throughput": fastest,
    }


# -- the scenario ---------------------------------------------------------------------------


async def broker_epoch(db: Database) -> int:
    epoch: int = await db.fetchval("SELECT epoch FROM broker_state")
    return epoch


async def run_scenario(settings: Settings, events: int, rate: float) -> dict[str, Any]:
    import ray

    from deployments.workers import ensure_consumer

    run_id = uuid.uuid4().hex[:8]
    db = await Database.connect(
        settings.replace(pg_pool_max_size=MAX_WRITERS + 4), application_name="nova-bench"
    )
    try:
        mismatched = await prepare(db, settings)
        if mismatched:
            print(f"bench.outbox: warning: partition counts differ: {mismatched}", file=sys.stderr)
        kill_lingering_consumer()
        await skip_backlog(settings)
        epoch_before = await broker_epoch(db)
        relays_before = await relay_snapshot(settings)
        consumers: list[Any] = []
        try:
            consumers = ensure_consumer(settings, CONSUMER_PATH)
            warmup_s = await warm_up(db, run_id, consumers[0])
            nova_paced = await nova_phase(
                db, run_id, "paced", events=events, rate_per_s=rate, writers=PACED_WRITERS
            )
            nova_max = await nova_phase(
                db, run_id, "max", events=events, rate_per_s=None, writers=MAX_WRITERS
            )
            consumer_status = await _actor_status(consumers[0])
            relays_after = await relay_snapshot(settings)
            epoch_after = await broker_epoch(db)
        finally:
            # Before the baseline, so that nothing of the Nova path still runs during it.
            for handle in consumers:
                ray.kill(handle, no_restart=True)
        direct = await baseline(settings, run_id, events, rate)
    finally:
        await db.close()

    nova = {
        "topic": NOVA_TOPIC,
        "partitions": partitions(settings),
        "relays": settings.relay_count,
        "warmup_s": round(warmup_s, 3),
        "paced": nova_paced,
        "max_throughput": nova_max,
        "consumer": {
            k: consumer_status.get(k)
            for k in (
                "consumer",
                "fetch_wait_ms",
                "applied",
                "duplicates",
                "rewinds",
                "retries",
                "dead_lettered",
                "commit_failures",
                "gap_rereads",
                "gaps_accepted",
                "last_error",
                "crashes",
                "error",
            )
            if k in consumer_status
        },
        "relay_activity": relay_delta(relays_before, relays_after),
        "broker_epoch": {"before": epoch_before, "after": epoch_after},
    }
    nova_p50 = nova_paced["latency_ms"]["p50"]
    nova_p99 = nova_paced["latency_ms"]["p99"]
    base_p50 = direct["paced"]["latency_ms"]["p50"]
    base_p99 = direct["paced"]["latency_ms"]["p99"]
    ratios = {
        "p50": ratio(nova_p50, base_p50),
        "p99": ratio(nova_p99, base_p99),
        "throughput": ratio(
            nova_max["end_to_end_per_s"], direct["max_throughput"]["end_to_end_per_s"]
        ),
    }
    phases = (nova_paced, nova_max)
    all_applied = all(
        phase["all_applied"] and phase["distinct_applied"] == events for phase in phases
    )
    no_double_apply = all(phase["applied_rows"] == phase["distinct_applied"] for phase in phases)
    return {
        "events": events,
        "rate_per_s": rate,
        "run_id": run_id,
        "nova": nova,
        "baseline_direct_kafka": direct,
        "ratios": ratios,
        "goals": [
            Goal(
                f"outbox to consumer p99 at {rate:g} events/s",
                nova_p99,
                base_p99,
                "ms",
                "direct aiokafka producer to consumer, p99",
                at_most=2.0,
                also=all_applied and no_double_apply,
            ).to_dict(),
            Goal(
                "outbox to consumer at full speed, throughput",
                nova_max["end_to_end_per_s"],
                direct["max_throughput"]["end_to_end_per_s"],
                "events/s",
                "direct aiokafka producer to consumer",
                at_least=0.5,
                also=all_applied and no_double_apply,
            ).to_dict(),
        ],
        "targets": {"p99_ms_at_500_per_s": TARGET_P99_MS, "p99_ratio_max": TARGET_P99_RATIO},
        "met": {
            "p99_ms_at_500_per_s": nova_p99 is not None and nova_p99 <= TARGET_P99_MS,
            "p99_ratio_max": ratios["p99"] is not None and ratios["p99"] <= TARGET_P99_RATIO,
            "all_applied": all_applied,
            "no_double_apply": no_double_apply,
            "exactly_once": all_applied and no_double_apply,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.outbox", description="Nova outbox benchmark against direct Kafka."
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"events per phase (default {DEFAULT_EVENTS}, at most 100000)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE_PER_S,
        help=f"paced rate per second (default {DEFAULT_RATE_PER_S:.0f})",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.events <= 100_000 or not 0 < args.rate <= 100_000:
        parser.error("--events must be within 1..100000 and --rate within (0, 100000]")
    try:
        load_stack_env()
    except StackNotUp as exc:
        print(f"bench.outbox: {exc}", file=sys.stderr)
        return 2
    import ray  # only now: Ray reads RAY_* from the environment on import and init

    settings = Settings.from_env()
    ray.init(
        address=os.environ["RAY_ADDRESS"],
        namespace="nova",
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        results = asyncio.run(run_scenario(settings, args.events, args.rate))
    finally:
        ray.shutdown()
    report(SCENARIO, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
