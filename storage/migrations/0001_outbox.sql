-- The event backbone: topic catalogue, transactional outbox, relay bookkeeping,
-- consumer idempotency ledger and dead letters.

-- Topics and their partition counts. The relay creates them in Kafka from here, and the
-- outbox refers to them, so an event for an unknown topic is refused inside the writer's
-- transaction instead of blocking the relay later.
CREATE TABLE kafka_topics (
    name        text PRIMARY KEY CHECK (name ~ '^[a-zA-Z0-9._-]{1,249}$'),
    partitions  integer NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per event, written in the same transaction as the change it describes.
-- `slot` spreads keys over 16 relay work units; a slot is published by one relay at a
-- time, in id order, which is what keeps each key's events in order with several relays.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL,
    topic           text NOT NULL REFERENCES kafka_topics (name),
    type            text NOT NULL CHECK (length(type) BETWEEN 1 AND 200),
    aggregate_id    text NOT NULL CHECK (length(aggregate_id) BETWEEN 1 AND 200),
    slot            smallint NOT NULL GENERATED ALWAYS AS ((hashtext(aggregate_id) & 15)::smallint) STORED,
    occurred_at     timestamptz NOT NULL,
    schema_version  integer NOT NULL DEFAULT 1,
    traceparent     text,
    payload         jsonb NOT NULL,
    headers         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    publish_epoch   integer
);
CREATE INDEX outbox_unpublished ON outbox (slot, id) WHERE published_at IS NULL;
CREATE INDEX outbox_created_at ON outbox (created_at);
CREATE INDEX outbox_event_id ON outbox (event_id);

-- The broker epoch grows each time the broker is found to have lost its log (the embedded
-- broker restarted, a topic recreated). Every message carries it, so consumers know to
-- read the new log from its start.
CREATE TABLE broker_state (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch       integer NOT NULL DEFAULT 0,
    reset_at    timestamptz,
    reset_reason text
);
INSERT INTO broker_state (id, epoch) VALUES (true, 0);

-- A floor under each partition's end offset, in the current epoch: the lowest offset of
-- the latest batch the relay saw acknowledged, plus one. (Not the highest: some brokers,
-- tansu among them, report the end offset as the first offset of the last batch + 1.)
-- An acknowledgement or end offset below it means the broker lost data.
CREATE TABLE broker_offsets (
    topic          text NOT NULL,
    partition      integer NOT NULL,
    min_end_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- Idempotency ledger: an event id is applied at most once per consumer. Written in the
-- same transaction as the consumer's own effects.
CREATE TABLE processed_events (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- Events a consumer could not apply. Mirrored to `dlq.all` through the outbox;
-- `nova dlq replay` sends them back to their consumer once the cause is fixed.
CREATE TABLE dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer      text NOT NULL,
    topic         text NOT NULL,
    partition     integer NOT NULL,
    kafka_offset  bigint NOT NULL,
    event_id      uuid,
    event         jsonb,
    raw_value     bytea,
    error         text NOT NULL,
    attempts      integer NOT NULL,
    failed_at     timestamptz NOT NULL DEFAULT now(),
    replayed_at   timestamptz
);
CREATE UNIQUE INDEX dead_letters_pending ON dead_letters (consumer, event_id)
    WHERE replayed_at IS NULL AND event_id IS NOT NULL;
CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at);
