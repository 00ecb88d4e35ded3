"""Kafka plumbing: clients configured one way for all of Nova, the topic catalogue, and
the consumer machinery every topic handler runs on (apply once per event id, retries,
dead letters, fetch pacing, offset-gap re-reads). The handlers are in `actors.consumers`."""
