"""The consumer groups Nova runs in production, as `"module:Class"` paths.

Issues add their consumers here (timeline fan-out, notifications, features, mail, ...).
`nova up` and `nova deploy` start one member of each.
"""

from __future__ import annotations

PRODUCTION_CONSUMERS: tuple[str, ...] = (
    "gateway.mail:MailConsumer",
    "actors.fanout:FanoutConsumer",
    "ranking.feature_consumer:FeatureConsumer",
    "ranking.analytics_sink:AnalyticsSink",
    "gateway.notifications:NotificationConsumer",
)
