-- Chat messages notify members who are not in the room when they arrive (MESSAGE).
-- One unread row per member and room folds a conversation's messages: `actor_id` is the
-- latest sender, `message_count` how many messages it stands for, `room_seq` the latest
-- one's seq, so reading the room past it (markRoomRead) marks the notification read too.
--
-- Expand only: new nullable columns, and CHECKs widened to admit the new kind. The
-- replaced CHECKs are the ones 0007 created unnamed (PostgreSQL named them).

ALTER TABLE notifications
    ADD COLUMN room_id       uuid REFERENCES chat_rooms (id) ON DELETE CASCADE,
    ADD COLUMN room_seq      bigint,
    ADD COLUMN message_count integer CHECK (message_count >= 1);

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('follow', 'like', 'comment', 'share', 'mention', 'message'));

ALTER TABLE notifications DROP CONSTRAINT notifications_check1;
ALTER TABLE notifications ADD CONSTRAINT notifications_post_by_kind
    CHECK ((kind IN ('follow', 'message')) = (post_id IS NULL));
ALTER TABLE notifications ADD CONSTRAINT notifications_room_by_kind
    CHECK ((kind = 'message') = (room_id IS NOT NULL AND room_seq IS NOT NULL
                                 AND message_count IS NOT NULL));

-- The unread row a room's new messages fold into.
CREATE UNIQUE INDEX notifications_unread_messages ON notifications (user_id, room_id)
    WHERE kind = 'message' AND read_at IS NULL;
