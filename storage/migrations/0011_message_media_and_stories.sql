-- Media beyond posts: messages carry media, and stories (a picture or video shown to
-- followers for 24 hours, with who viewed it).
--
-- `media.attached_to` says what a media belongs to, and so who may fetch it: a post's
-- media is public (cacheable URLs); a message's or a story's is private (signed, expiring
-- URLs). Expand only: new columns with defaults, new tables.

ALTER TABLE media ADD COLUMN attached_to text
    CHECK (attached_to IN ('post', 'message', 'story'));
UPDATE media SET attached_to = 'post' WHERE attached_at IS NOT NULL;

ALTER TABLE chat_messages ADD COLUMN media_ids uuid[] NOT NULL DEFAULT '{}';
-- A message with media may have no text.
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_text_check;
ALTER TABLE chat_messages ADD CONSTRAINT chat_messages_text_check
    CHECK (length(text) <= 4000 AND (length(text) >= 1 OR cardinality(media_ids) > 0));

CREATE TABLE stories (
    id          uuid PRIMARY KEY,
    author_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    media_id    uuid NOT NULL REFERENCES media (id),
    text        text NOT NULL DEFAULT '' CHECK (length(text) <= 500),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Every read filters on this: an expired story is never shown, swept or not.
    expires_at  timestamptz NOT NULL,
    deleted_at  timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX stories_live_by_author ON stories (author_id, expires_at) WHERE deleted_at IS NULL;
CREATE INDEX stories_by_expiry ON stories (expires_at);

-- One row per viewer: a second view records nothing.
CREATE TABLE story_views (
    story_id   uuid NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    viewer_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    viewed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (story_id, viewer_id)
);
-- storyViewers pages newest first by (viewed_at, viewer).
CREATE INDEX story_views_newest ON story_views (story_id, viewed_at DESC, viewer_id DESC);
