-- Notifications: who did what to whom (followed you, liked, commented on or shared your
-- post, mentioned you), written by the `notifications` consumer from the event log and
-- read newest first. A block either way stops them; nobody is notified of their own acts.

CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('follow', 'like', 'comment', 'share', 'mention')),
    actor_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id     uuid REFERENCES posts (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_at     timestamptz,
    CHECK (user_id <> actor_id),
    CHECK ((kind = 'follow') = (post_id IS NULL))
);
CREATE INDEX notifications_inbox ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
-- Unfollow and follow again, unlike and like again: the first one notified, once.
CREATE UNIQUE INDEX notifications_once_follow ON notifications (user_id, actor_id)
    WHERE kind = 'follow';
CREATE UNIQUE INDEX notifications_once_like ON notifications (user_id, actor_id, post_id)
    WHERE kind = 'like';
