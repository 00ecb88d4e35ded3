"""A rolling update of the gateway as Serve's controller sees it: which replicas exist and
in what state, followed while a deploy runs.

`serve.run` returns only once the application is running again, which includes the
replaced replicas having stopped: Serve keeps a replaced ingress replica serving through
its draining period (its WebSockets closed with 1012 at once, `gateway.transport.drain`),
then waits for its requests in flight. When the new replicas ran and when the last old
one stopped can therefore only be seen from another thread while the deploy runs.
`serve.status()` would not do: it waits without a bound and leaves out stopping replicas.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GATEWAY = "Gateway"


@dataclass(frozen=True)
class GatewayState:
    target: int  # replicas Serve aims for (autoscaling moves it)
    replicas: dict[str, str] = field(default_factory=dict)  # replica id → Serve's state


def gateway_state(app_name: str, timeout_s: float = 10.0) -> GatewayState:
    """The gateway's replicas, stopping ones included (`STARTING`, `RUNNING`,
    `STOPPING`, ...), and its target; none when the application is not deployed."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:  # Serve was never started on this cluster
        return GatewayState(0)
    details: Any = ray.get(controller.get_serve_instance_details.remote(), timeout=timeout_s)
    app = (details.get("applications") or {}).get(app_name) or {}
    gateway = (app.get("deployments") or {}).get(GATEWAY) or {}
    return GatewayState(
        int(gateway.get("target_num_replicas") or 0),
        {r["replica_id"]: _state(r["state"]) for r in gateway.get("replicas") or []},
    )


def _state(state: Any) -> str:
    """Serve's states are `str` enums, which `str()` spells with their class name."""
    return str(getattr(state, "value", state))


@dataclass(frozen=True)
class Rollout:
    """How a rollout went, in seconds from the moment the watch began."""

    replaced: int  # replicas that ran before and have stopped since
    new_running_s: float  # the target number of new replicas running
    old_stopped_s: float  # the last replaced replica gone


class RolloutWatch:
    """Follows the gateway's rollout from a thread of its own; create it just before the
    deploy (it notes the replicas running then), and ask for `result` after.

        watch = RolloutWatch(APP_NAME).start()
        deploy(settings, ...)
        rollout = watch.result(timeout_s=60)
    """

    def __init__(
        self,
        app_name: str,
        *,
        poll_s: float = 0.5,
        state: Callable[[str], GatewayState] = gateway_state,
    ) -> None:
        self._app_name, self._poll_s, self._state = app_name, poll_s, state
        self.old = set(state(app_name).replicas)
        self._started = time.monotonic()
        self._new_running_s: float | None = None
        self._last_seen: GatewayState | str = "nothing yet"
        self._rollout: Rollout | None = None
        self._done, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._follow, name="rollout-watch", daemon=True)

    def start(self) -> RolloutWatch:
        self._thread.start()
        return self

    def result(self, timeout_s: float) -> Rollout:
        """The rollout once it has finished, waiting at most `timeout_s` more; raises
        `TimeoutError` naming the replicas' last seen states otherwise."""
        finished = self._done.wait(timeout_s)
        self._stop.set()
        if not finished or self._rollout is None:
            raise TimeoutError(
                f"the gateway's rollout had not finished: last seen {self._last_seen} "
                f"(replicas being replaced: {sorted(self.old)})"
            )
        return self._rollout

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._look(self._state(self._app_name))
            except Exception as exc:  # Serve's controller busy or restarting: look again
                self._last_seen = f"{type(exc).__name__}: {exc}"
            if self._done.is_set():
                return
            self._stop.wait(self._poll_s)

    def _look(self, now: GatewayState) -> None:
        self._last_seen = now
        elapsed = time.monotonic() - self._started
        new = [r for r, state in now.replicas.items() if r not in self.old and state == "RUNNING"]
        if self._new_running_s is None and now.target and len(new) >= now.target:
            self._new_running_s = elapsed
        if self._new_running_s is not None and not self.old & now.replicas.keys():
            self._rollout = Rollout(len(self.old), self._new_running_s, elapsed)
            self._done.set()
