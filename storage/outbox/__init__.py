"""The transactional outbox: events written as rows in the caller's own transaction
(`rows`), and the relay that publishes them to Kafka in order per key and survives a
broker that loses its log (`relay`, `broker_loss`)."""
