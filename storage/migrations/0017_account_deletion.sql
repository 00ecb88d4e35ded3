-- Account deletion: a request with a grace period, then erasure. Expand only.
--
-- `erase_after` is set by `deleteMyAccount` and cleared by a sign-in before it passes; once
-- it has passed, the erasure job deletes the account and everything that names it in one
-- transaction (`storage.repositories.erasure`) and leaves a row in `account_erasures` until
-- the derived stores (Redis, shards, the media store, retained events) are scrubbed too.
ALTER TABLE users ADD COLUMN erase_after timestamptz;
CREATE INDEX users_erase_after ON users (erase_after) WHERE erase_after IS NOT NULL;

-- Messages outlive their sender's account, shown as from a deleted account: their
-- `sender_id` becomes the nil UUID, which names no account, so it can no longer be a
-- foreign key. Likewise the creator of a room.
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_sender_id_fkey;
ALTER TABLE chat_rooms DROP CONSTRAINT chat_rooms_created_by_fkey;

-- An erasure between its transaction and the end of its scrub. The row names the account
-- so the scrub can find what is derived from it; it is deleted when the scrub is done, and
-- only the audit log's tombstone remains.
CREATE TABLE account_erasures (
    user_id      uuid PRIMARY KEY,
    username     text NOT NULL,
    email        text NOT NULL,
    -- What the account's analytics rows carry instead of its id.
    pseudonym    uuid NOT NULL,
    rooms        uuid[] NOT NULL DEFAULT '{}',
    -- Media and export archives to delete from the media store (keys `<id>/…`).
    files        uuid[] NOT NULL DEFAULT '{}',
    erased_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    scrub_after  timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX account_erasures_due ON account_erasures (scrub_after);
