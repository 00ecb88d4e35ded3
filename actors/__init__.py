"""Ray actors that own live state, and the topic consumers.

- `timeline_shard`, `chat_shard`, `counter_shard`: plain classes that own home timelines,
  chat rooms and counters, one key's state in one shard (`directory`: jump hash of the key);
  `remote` wraps them as Ray actors; `*_client` is how the gateway and workers reach them;
  `read_channel` serves timeline pages without a Ray call.
- `consumers`: every Kafka topic handler (fan-out, notifications, mail, features, the
  analytics sink).
- `settings`: the shards' and consumers' settings (`ActorSettings`).
"""
