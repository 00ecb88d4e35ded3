-- Notifications: who did what to whom (followed you, liked, commented on or shared your
-- post, mentioned you), written by the `notifications` consumer from the event log and
-- read newest first. A block either way stops them; nobody is notified of their own acts.
-- Likes on one post aggregate into one unread row ("alice and 12 others"): `actor_id` is
-- the latest liker and `actor_count` how many people the row stands for.

CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('follow', 'like', 'comment', 'share', 'mention')),
    actor_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id     uuid REFERENCES posts (id) ON DELETE CASCADE,
    actor_count integer NOT NULL DEFAULT 1 CHECK (actor_count >= 1),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_at     timestamptz,
    CHECK (user_id <> actor_id),
    CHECK ((kind = 'follow') = (post_id IS NULL))
);
CREATE INDEX notifications_inbox ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
-- Unfollow and follow again: the first follow notified, once.
CREATE UNIQUE INDEX notifications_once_follow ON notifications (user_id, actor_id)
    WHERE kind = 'follow';
-- The unread row new likes of a post fold into.
CREATE UNIQUE INDEX notifications_unread_likes ON notifications (user_id, post_id)
    WHERE kind = 'like' AND read_at IS NULL;

-- Each (post, liker) notifies once, whatever unlikes and likes follow.
CREATE TABLE notified_likes (
    post_id   uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    actor_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (post_id, actor_id)
);
