-- The consumer groups that read the outbox's topics, as their members announce themselves
-- when they join and every few minutes after (`storage.kafka.groups`). When the broker
-- loses its log, the relays send again only the retained events that some group seen
-- within the outbox retention has not applied yet (`storage.outbox.rows.redrive`), rather
-- than the whole retention window. Expand only.
CREATE TABLE consumer_groups (
    name    text PRIMARY KEY,
    topics  text[] NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);
