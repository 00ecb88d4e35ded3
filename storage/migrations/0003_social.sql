-- The social loop: follows, posts (with shares), likes, comments, the counters that
-- CounterShard actors own, and full-text / trigram search.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE follows (
    follower_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
-- Connections page newest first by (created_at, other id): one index each way.
CREATE INDEX follows_followers ON follows (followee_id, created_at DESC, follower_id DESC);
CREATE INDEX follows_following ON follows (follower_id, created_at DESC, followee_id DESC);

CREATE TABLE posts (
    id               uuid PRIMARY KEY,
    author_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text             text NOT NULL CHECK (length(text) <= 2000),
    tags             text[] NOT NULL DEFAULT '{}',
    mentions         text[] NOT NULL DEFAULT '{}',
    shared_post_id   uuid REFERENCES posts (id),
    -- The same key from the same author returns the same post (client retries).
    idempotency_key  text CHECK (length(idempotency_key) <= 128),
    -- Tags weigh more than words of the text; kept in step by every write of text.
    search           tsvector NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    edited_at        timestamptz,
    deleted_at       timestamptz,
    deleted_by       uuid
);
CREATE UNIQUE INDEX posts_idempotency ON posts (author_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX posts_by_author ON posts (author_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX posts_search ON posts USING gin (search) WHERE deleted_at IS NULL;
CREATE INDEX posts_tags ON posts USING gin (tags) WHERE deleted_at IS NULL;
CREATE INDEX posts_shared ON posts (shared_post_id) WHERE shared_post_id IS NOT NULL;

CREATE TABLE likes (
    post_id     uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX likes_by_user ON likes (user_id, created_at DESC);

CREATE TABLE comments (
    id          uuid PRIMARY KEY,
    post_id     uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz
);
CREATE INDEX comments_by_post ON comments (post_id, created_at, id) WHERE deleted_at IS NULL;

-- Counters, written only together with the rows they count (same transaction), so they
-- always equal those rows. `version` goes up by one with every change: a CounterShard
-- applies a change it is told about only if it is the next version, and reloads the row
-- when it sees a gap, so its copy in memory never drifts from PostgreSQL.
-- No `>= 0` CHECKs: an upsert checks its proposed INSERT row before it finds the conflict,
-- so a negative delta (an unlike) would fail even though it updates an existing row.
CREATE TABLE post_counters (
    post_id   uuid PRIMARY KEY REFERENCES posts (id) ON DELETE CASCADE,
    likes     bigint NOT NULL DEFAULT 0,
    comments  bigint NOT NULL DEFAULT 0,
    shares    bigint NOT NULL DEFAULT 0,
    version   bigint NOT NULL DEFAULT 0
);

CREATE TABLE user_counters (
    user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    followers  bigint NOT NULL DEFAULT 0,
    following  bigint NOT NULL DEFAULT 0,
    version    bigint NOT NULL DEFAULT 0
);

-- People search: trigram similarity on usernames and display names.
CREATE INDEX users_username_trgm ON users USING gin (lower(username) gin_trgm_ops);
CREATE INDEX users_display_name_trgm ON users USING gin (lower(display_name) gin_trgm_ops);
