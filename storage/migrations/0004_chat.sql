-- Chat: direct and group rooms, members with read markers, messages numbered per room.
-- A room's ChatShard is its only writer of messages: it assigns `seq` (no gaps, no
-- repeats) and commits messages with their outbox events in one transaction.

CREATE TABLE chat_rooms (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('direct', 'group')),
    name             text CHECK (length(name) BETWEEN 1 AND 100),
    -- Direct rooms: "<lower id>:<higher id>", so a pair always gets the same room.
    direct_key       text UNIQUE,
    created_by       uuid NOT NULL REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seq         bigint NOT NULL DEFAULT 0,
    last_message_at  timestamptz,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE chat_members (
    room_id     uuid NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    left_at     timestamptz,
    read_up_to  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX chat_members_by_user ON chat_members (user_id) WHERE left_at IS NULL;

CREATE TABLE chat_messages (
    room_id            uuid NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    seq                bigint NOT NULL,
    id                 uuid NOT NULL UNIQUE,
    sender_id          uuid NOT NULL REFERENCES users (id),
    text               text NOT NULL CHECK (length(text) BETWEEN 1 AND 4000),
    client_message_id  text NOT NULL CHECK (length(client_message_id) BETWEEN 1 AND 128),
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (room_id, seq),
    -- A retried send finds its original instead of storing a copy.
    UNIQUE (room_id, sender_id, client_message_id)
);
