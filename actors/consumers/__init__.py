"""Every Kafka topic handler Nova runs, one module per consumer group.

What happens when a topic gets an event is answered here:

| module | group | topics |
|---|---|---|
| `fanout` | `timeline-fanout` | posts created or deleted, follows, blocks → home timelines |
| `notifications` | `notifications` | follows, likes, comments, shares, mentions, chat → inboxes |
| `mail` | `mail` | password reset, email verification, password changed → SMTP |
| `features` | `ranking-features` | posts, likes, comments, shares, follows, analytics → features |
| `analytics_sink` | `analytics-sink` | `analytics.events` → the `analytics_events` table |

Each is a `storage.kafka.consumer.Consumer` (apply once per event id, dead letters, retries),
built with the settings it runs with. `PRODUCTION_CONSUMERS` is the list `nova up` and
`nova deploy` start, one member each (`deployments.workers`).
"""

from __future__ import annotations

PRODUCTION_CONSUMERS: tuple[str, ...] = (
    "actors.consumers.mail:MailConsumer",
    "actors.consumers.fanout:FanoutConsumer",
    "actors.consumers.features:FeatureConsumer",
    "actors.consumers.analytics_sink:AnalyticsSink",
    "actors.consumers.notifications:NotificationConsumer",
)
