"""How many replicas Serve runs of the gateway, the Ranker and the FeatureStore: a fixed
count, or Serve's autoscaling between two bounds by requests in flight.

Serve counts a replica's requests in flight (for the gateway, open WebSockets too) and
aims at `target` per replica, within `[replicas, max_replicas]`. Ingress replicas served
by HAProxy report their counts themselves; deployments called through handles are
counted by the callers' handles.
"""

from __future__ import annotations

from typing import Any

from deployments.settings import Settings


def replica_options(
    settings: Settings, *, replicas: int, max_replicas: int, target: float
) -> dict[str, Any]:
    """Options for `Deployment.options`: `num_replicas` when the count is fixed
    (`max_replicas` 0 or equal to `replicas`), otherwise an `autoscaling_config` that
    starts at `replicas` and never goes below it."""
    if max_replicas <= replicas:
        return {"num_replicas": replicas}
    return {
        "autoscaling_config": {
            "min_replicas": replicas,
            "initial_replicas": replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": target,
            "upscale_delay_s": settings.autoscale_upscale_delay_s,
            "downscale_delay_s": settings.autoscale_downscale_delay_s,
            "look_back_period_s": settings.autoscale_look_back_s,
        }
    }


def gateway_replicas(settings: Settings) -> dict[str, Any]:
    return replica_options(
        settings,
        replicas=settings.gateway_replicas,
        max_replicas=settings.gateway_max_replicas,
        target=settings.gateway_target_ongoing_requests,
    )


def ranker_replicas(settings: Settings) -> dict[str, Any]:
    return replica_options(
        settings,
        replicas=settings.ranker_replicas,
        max_replicas=settings.ranker_max_replicas,
        target=settings.ranker_target_ongoing_requests,
    )


def feature_store_replicas(settings: Settings) -> dict[str, Any]:
    return replica_options(
        settings,
        replicas=settings.feature_store_replicas,
        max_replicas=settings.feature_store_max_replicas,
        target=settings.feature_store_target_ongoing_requests,
    )
