-- Reports, moderation and the audit log. Expand only.
--
-- Moderation hides a post, comment or story the way its author's deletion does
-- (`deleted_at` set, so every read that leaves out deleted rows leaves it out too), and
-- says why in `moderation`: 'removed' by a moderator, 'held' by the blocklist until a
-- moderator publishes it, 'suspended' with its author. Only rows hidden by moderation can
-- come back (RESTORE, UNSUSPEND); an author's own deletion is final.

ALTER TABLE posts ADD COLUMN moderation text
    CHECK (moderation IN ('removed', 'held', 'suspended'));
ALTER TABLE comments ADD COLUMN moderation text
    CHECK (moderation IN ('removed', 'held', 'suspended'));
ALTER TABLE stories ADD COLUMN moderation text
    CHECK (moderation IN ('removed', 'suspended'));
-- A message removed by a moderator is a tombstone like a deleted one; this says whose.
ALTER TABLE chat_messages ADD COLUMN removed_at timestamptz;
-- 'infinity' for an indefinite suspension; in the past (or NULL) means not suspended.
ALTER TABLE users ADD COLUMN suspended_until timestamptz;

CREATE INDEX posts_moderated ON posts (author_id, moderation) WHERE moderation IS NOT NULL;
CREATE INDEX comments_by_author ON comments (author_id) WHERE deleted_at IS NULL;

-- One row per report. `reporter_id` NULL: an automatic report (the blocklist).
-- `snapshot`: what a MESSAGE report keeps of the reported message alone.
CREATE TABLE reports (
    id           uuid PRIMARY KEY,
    reporter_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    target_type  text NOT NULL CHECK (target_type IN ('POST', 'COMMENT', 'USER', 'MESSAGE', 'STORY')),
    target_id    uuid NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('SPAM', 'HARASSMENT', 'HATE', 'VIOLENCE', 'SEXUAL',
                                                 'SELF_HARM', 'OTHER')),
    note         text CHECK (length(note) <= 1000),
    snapshot     jsonb,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at  timestamptz,
    resolved_by  uuid,
    resolution   text
);
-- One open report per reporter and target.
CREATE UNIQUE INDEX reports_one_open ON reports (reporter_id, target_type, target_id)
    WHERE resolved_at IS NULL AND reporter_id IS NOT NULL;
CREATE INDEX reports_open_targets ON reports (target_type, target_id) WHERE resolved_at IS NULL;
CREATE INDEX reports_targets ON reports (target_type, target_id, created_at);

-- Every moderation action and role change: who (NULL actor: an operator at the command
-- line), what, on what, when and why. Append-only: UPDATE, DELETE and TRUNCATE are
-- refused. `actor_id` is no foreign key, so that the log outlives the accounts it names.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_id     uuid,
    action       text NOT NULL,
    target_type  text NOT NULL,
    target_id    uuid,
    note         text,
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_time ON audit_log (at DESC, id DESC);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
