-- Notification preferences, mutes and email digests.
--
-- A user without a `notification_preferences` row has the defaults (every kind in the app;
-- email for FOLLOW, COMMENT, MENTION and MESSAGE). A row holds the kinds switched on per
-- channel, and `email_enabled`, the switch an unsubscribe link turns off.
--
-- Mutes: a muted user's acts and a muted room's messages notify nobody who muted them.
--
-- Digests: `notifications.emailed_at` records which notifications a digest carried, so a
-- notification is mailed at most once; `notification_digests.last_sent_at` spaces one
-- user's digests by `NOVA_NOTIFICATION_DIGEST_INTERVAL_S`.
--
-- Expand only: new tables, and one nullable column.

CREATE TABLE notification_preferences (
    user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    in_app_kinds  text[] NOT NULL,
    email_kinds   text[] NOT NULL,
    email_enabled boolean NOT NULL DEFAULT true,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE notification_muted_users (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    muted_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, muted_id),
    CHECK (user_id <> muted_id)
);

CREATE TABLE notification_muted_rooms (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id    uuid NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, room_id)
);

-- The digest job finds its candidates through `notifications_unread` (0007).
ALTER TABLE notifications ADD COLUMN emailed_at timestamptz;

CREATE TABLE notification_digests (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_sent_at timestamptz NOT NULL
);
