-- Media: uploads and their processing.
--
-- A row is made by createUpload (UPLOADING, with the declared name, type and size and when
-- the signed URL expires), receives its bytes once (uploaded_at, size), and is queued by
-- completeUpload (PROCESSING). The processor claims queued rows with a lease
-- (lease_until, attempts), so a processor that dies mid-job loses nothing: the lease runs
-- out and another claim takes the row again. READY rows carry what processing made;
-- FAILED rows say why. Originals and variants live in the media store under the row's id.

CREATE TABLE media (
    id                uuid PRIMARY KEY,
    owner_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('image', 'video')),
    status            text NOT NULL DEFAULT 'uploading'
                      CHECK (status IN ('uploading', 'processing', 'ready', 'failed')),
    filename          text NOT NULL,
    declared_type     text NOT NULL,
    declared_size     bigint NOT NULL CHECK (declared_size > 0),
    content_type      text,            -- what the bytes are, by their content
    size              bigint,          -- what arrived
    upload_expires_at timestamptz NOT NULL,
    uploaded_at       timestamptz,
    width             integer,
    height            integer,
    duration_ms       integer,
    blurhash          text,
    variants          jsonb NOT NULL DEFAULT '[]',
    error             text,
    attempts          integer NOT NULL DEFAULT 0,
    lease_until       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    processed_at      timestamptz,
    CHECK ((status = 'failed') = (error IS NOT NULL)),
    CHECK (status = 'uploading' OR uploaded_at IS NOT NULL)
);

-- The processor's queue: rows waiting for (or holding) a lease.
CREATE INDEX media_queue ON media (lease_until NULLS FIRST, created_at)
    WHERE status = 'processing';
CREATE INDEX media_by_owner ON media (owner_id, created_at DESC);
