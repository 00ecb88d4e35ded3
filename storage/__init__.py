"""Storage: PostgreSQL, Redis and Kafka, and every SQL statement. Imports none of Nova's
other packages.

- `settings`: the settings machinery and the storage layer's settings;
- `db`, `migrate`, `migrations/`: the PostgreSQL pool and forward-only migrations;
- `repositories/`: one module per aggregate, all of Nova's domain SQL; `rows` maps rows;
- `outbox/`: events written in the caller's transaction, and the relay to Kafka;
- `kafka/`: clients, the topic catalogue, and the machinery consumers run on;
- `redis_client`, `presence`, `secrets`, `events`, `errors`, `tracing`, `logs`, `stalls`,
  `tasks`: Redis, room presence, sealed secrets, the event envelope, the error hierarchy,
  trace context, log format, event-loop stall watch, supervised background loops.
"""
