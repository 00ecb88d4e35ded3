"""Storage: PostgreSQL, Redis and Kafka plumbing. Imports none of Nova's other packages.

Public names: `Settings`, `Database`, the error hierarchy, `Event`, `add_event`,
`OutboxRelay`, `Consumer`/`ConsumerRunner`, `RedisLedger`, the topic catalogue and
`migrate`. Import them from the submodules named in each docstring.
"""
