-- Ranking: model versions, their traffic routes (A/B splits) with history for rollback,
-- and the analytics log (client events with the features served for each impression).

CREATE TABLE model_versions (
    name                text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    version             text NOT NULL CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    format              text NOT NULL CHECK (format IN ('numpy', 'onnx')),
    checksum            text NOT NULL,            -- sha256 of the artifact, hex
    artifact            text NOT NULL,            -- path relative to NOVA_MODEL_STORE
    size_bytes          bigint NOT NULL,
    features            text[] NOT NULL,          -- the schema the model expects, in order
    schema_fingerprint  text NOT NULL,
    created_by          text NOT NULL,
    notes               text NOT NULL DEFAULT '',
    metrics             jsonb NOT NULL DEFAULT '{}',  -- e.g. held-out AUC from `nova models train`
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, version)
);

-- The live split of one model name's traffic: {"v1": 90, "v2": 10}, percentages summing
-- to 100. `revision` grows with every change; gateways poll it.
CREATE TABLE model_routes (
    name        text PRIMARY KEY,
    arms        jsonb NOT NULL,
    revision    bigint NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE model_route_history (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    arms        jsonb NOT NULL,
    revision    bigint NOT NULL,
    changed_by  text NOT NULL,
    reason      text NOT NULL,                    -- route | rollback
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX model_route_history_by_name ON model_route_history (name, id DESC);

-- Client events from `trackEvents`, written in batches by the analytics sink. Impressions
-- carry the feature vector that was served, so training sees exactly what the model saw.
CREATE TABLE analytics_events (
    event_id       uuid NOT NULL,
    user_id        uuid NOT NULL,
    post_id        uuid NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('IMPRESSION', 'VIEW', 'CLICK', 'DWELL')),
    model_name     text,
    model_version  text,
    position       integer,
    dwell_ms       integer,
    features       real[],
    occurred_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX analytics_events_by_model ON analytics_events (model_name, model_version, occurred_at);
CREATE INDEX analytics_events_by_time ON analytics_events (occurred_at);
CREATE INDEX analytics_events_by_pair ON analytics_events (user_id, post_id);

-- Trending candidates: the last day's posts.
CREATE INDEX posts_recent ON posts (created_at DESC) WHERE deleted_at IS NULL;
