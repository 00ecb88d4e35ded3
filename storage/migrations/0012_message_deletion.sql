-- A sender may delete a message: it stays in its room's sequence as a tombstone (no text,
-- no media shown), so seq numbers keep no gaps, and its media is removed after the grace
-- period, as a deleted post's is. Expand only.

ALTER TABLE chat_messages ADD COLUMN deleted_at timestamptz;
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_text_check;
ALTER TABLE chat_messages ADD CONSTRAINT chat_messages_text_check
    CHECK (length(text) <= 4000
           AND (length(text) >= 1 OR cardinality(media_ids) > 0 OR deleted_at IS NOT NULL));
CREATE INDEX chat_messages_deleted_with_media ON chat_messages (deleted_at)
    WHERE deleted_at IS NOT NULL AND cardinality(media_ids) > 0;
