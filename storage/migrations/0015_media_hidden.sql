-- A deleted post's media stops being served at once (`hidden_at`), though its files are
-- kept for the grace period in which a removal may be undone. Expand only.

ALTER TABLE media ADD COLUMN hidden_at timestamptz;
