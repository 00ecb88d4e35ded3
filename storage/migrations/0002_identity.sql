-- Identity: accounts, sessions with rotating refresh tokens, one-time tokens, signing keys,
-- blocks. Secrets are never stored plain: passwords as Argon2id hashes, refresh and
-- one-time tokens as SHA-256 digests, private signing keys sealed with NOVA_SECRET_KEY.

CREATE TABLE users (
    id                    uuid PRIMARY KEY,
    username              text NOT NULL CHECK (username ~ '^[A-Za-z0-9_]{3,30}$'),
    email                 text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash         text NOT NULL,
    display_name          text CHECK (length(display_name) <= 80),
    bio                   text CHECK (length(bio) <= 500),
    avatar_url            text CHECK (length(avatar_url) <= 2048),
    roles                 text[] NOT NULL DEFAULT '{user}'
                          CHECK (roles <@ ARRAY['user', 'moderator', 'admin']),
    email_verified_at     timestamptz,
    password_changed_at   timestamptz NOT NULL DEFAULT now(),
    -- Bumped on every change; caches keep the highest version they have seen.
    version               bigint NOT NULL DEFAULT 1,
    last_seen_at          timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
-- Case-insensitively unique: "Alice" and "alice" are one account.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- A login on one device. Its refresh tokens form a family: each use rotates the token,
-- and presenting an already-rotated one means it was stolen, so the session is revoked.
CREATE TABLE auth_sessions (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text,
    user_agent      text,
    ip              text
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash   bytea PRIMARY KEY,
    session_id   uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    -- Set when this token was exchanged for the next one.
    rotated_at   timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Password reset and email verification tokens: random, single use, expiring.
CREATE TABLE one_time_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX one_time_tokens_user ON one_time_tokens (user_id, purpose);

-- RS256 signing keys. The newest unretired key signs; every key whose tokens may still be
-- alive verifies and is published in the JWKS.
CREATE TABLE signing_keys (
    kid               text PRIMARY KEY,
    private_key       text NOT NULL,          -- PEM, sealed with NOVA_SECRET_KEY
    public_jwk        jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- When a newer key took over signing; the key verifies until its last token expires.
    superseded_at     timestamptz
);

CREATE TABLE blocks (
    blocker_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);
CREATE INDEX blocks_by_time ON blocks (blocker_id, created_at DESC, blocked_id);
