-- A person's data export: a job leased by the export worker (like media processing), then
-- an archive in the media store under the row's id until `expires_at`, then EXPIRED.
CREATE TABLE data_exports (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'ready', 'failed', 'expired')),
    progress      real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    attempts      integer NOT NULL DEFAULT 0,
    leased_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    ready_at      timestamptz,
    expires_at    timestamptz,
    size_bytes    bigint,
    error         text
);

-- One export at a time per person: a second request finds the first.
CREATE UNIQUE INDEX data_exports_one_open ON data_exports (user_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX data_exports_by_user ON data_exports (user_id, created_at DESC);
CREATE INDEX data_exports_open ON data_exports (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX data_exports_ready ON data_exports (expires_at) WHERE status = 'ready';
