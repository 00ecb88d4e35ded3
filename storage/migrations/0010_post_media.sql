-- Posts carry media (up to 4 pictures, or one video), in the order given. A media is
-- attached once (attached_at): what is never attached is removed after a day.
--
-- Expand only: new columns with defaults.

ALTER TABLE posts ADD COLUMN media_ids uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE media ADD COLUMN attached_at timestamptz;
CREATE INDEX media_unattached ON media (created_at) WHERE attached_at IS NULL;
