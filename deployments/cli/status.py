"""`nova status`: what runs and how far behind it is, gathered from the stack, PostgreSQL,
Serve's controller and every named actor, each asked with a timeout.

A part that does not answer is reported as such (`"answered": false` with the reason, or
`"unreachable: ..."` for a whole section), never as a crash of the command: the report is
what an operator reads while something is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from deployments.cli.common import connect_ray, with_db
from deployments.stack import Layout, Stack, dev_layout

# Every call to a Ray actor or to Serve's controller waits at most this long.
CALL_TIMEOUT_S = 5.0
SHARD_NAME = re.compile(r"^(counter|timeline|chat)-shard-(\d+)$")
_SHARD_KINDS = ("timeline", "counter", "chat")
_CLEAR_SCREEN = "\x1b[H\x1b[2J"


def positive_seconds(text: str) -> float:
    """An interval on the command line: a number of seconds above zero."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds above 0")
    return seconds


def part_state(parts: dict[str, Any], name: str) -> str:
    """A part's state, whether `Stack.status()` gives it as a word or as a dict."""
    value = parts.get(name, "unknown")
    if isinstance(value, dict):
        return str(value.get("state", value.get("status", "unknown")))
    return str(value)


class StatusProbe:
    """Gathers one report per `report()` call; connects to Ray once, on first need, and
    keeps the connection for the refreshes of `--watch` and `nova top`."""

    def __init__(self, layout: Layout | None = None, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.layout = layout or dev_layout()
        self.stack = Stack(self.layout)
        self.timeout_s = timeout_s
        self._ray: str | None = None  # "" once connected, else why not

    def report(self) -> dict[str, Any]:
        parts = self.stack.status()
        report: dict[str, Any] = {
            "state_dir": str(self.layout.state_dir),
            "parts": parts,
            "supervisor": self.stack.supervision(),
        }
        if part_state(parts, "postgresql") != "stopped":
            try:
                report["outbox"] = with_db(_outbox_report)
            except Exception as exc:
                report["outbox"] = f"unreachable: {_reason(exc)}"
        if part_state(parts, "ray") != "stopped":
            report.update(self._ray_report())
        return report

    def _ray_report(self) -> dict[str, Any]:
        failure = self._connect()
        if failure:
            gone = f"unreachable: {failure}"
            return {"workers": gone, "serve": gone, "shards": gone, "consumers": gone}
        sections: dict[str, Any] = {}
        for key, gather in (
            ("workers", self._workers),
            ("serve", self._serve),
            ("shards", self._shards),
        ):
            try:
                sections[key] = gather()
            except Exception as exc:
                sections[key] = f"unreachable: {_reason(exc)}"
        workers = sections["workers"]
        sections["consumers"] = (
            consumer_groups(workers) if isinstance(workers, list) else sections["workers"]
        )
        return sections

    def _connect(self) -> str:
        if self._ray is None:
            try:
                ray = sys.modules.get("ray")  # imported here, Ray would miss its environment
                if ray is None or not ray.is_initialized():
                    env = self._ray_environment()
                    if absent := _no_ray_at(env.get("RAY_ADDRESS", ""), self.timeout_s):
                        return absent
                    connect_ray(env)
                self._ray = ""
            except Exception as exc:
                return _reason(exc)  # tried again on the next refresh
        return self._ray

    def _ray_environment(self) -> dict[str, str]:
        """What a Ray client of this stack needs, and nothing it would have to create (the
        stack's full environment makes its secrets when they are missing)."""
        env = dict(os.environ)
        if self.stack.embedded()["ray"]:
            env.update(self.stack.ray.environment(), RAY_ADDRESS=self.stack.ray.address)
        return env

    def _workers(self) -> list[dict[str, Any]]:
        from deployments.workers import NAMESPACE

        names = [n for n in _named_actors(NAMESPACE) if n.startswith("nova-")]
        return ask_status(names, NAMESPACE, self.timeout_s)

    def _shards(self) -> list[dict[str, Any]]:
        from actors.remote import NAMESPACE

        names = sorted(
            (n for n in _named_actors(NAMESPACE) if SHARD_NAME.match(n)), key=_shard_order
        )
        return [shard_row(answer) for answer in ask_status(names, NAMESPACE, self.timeout_s)]

    def _serve(self) -> dict[str, Any]:
        import ray

        # serve.status() reads the same details from the controller, but waits without a
        # bound and drops each deployment's target replica count.
        from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

        try:
            controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            return {"running": False, "applications": {}, "proxies": {}}
        asked: Any = controller.get_serve_instance_details.remote()
        return serve_summary(ray.get(asked, timeout=self.timeout_s))


def _no_ray_at(address: str, timeout_s: float) -> str:
    """Why nothing answers at a `host:port` Ray address, or "" if something does: against
    an address where no Ray runs, `ray.init` retries for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit():
        return ""  # `auto`, `ray://...`: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return f"no Ray at {address}: {exc}"
    return ""


def _named_actors(namespace: str) -> list[str]:
    import ray

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace
    ]


def ask_status(names: Iterable[str], namespace: str, timeout_s: float) -> list[dict[str, Any]]:
    """Every named actor's `status()`, asked at once and awaited together for at most
    `timeout_s`; one that fails or is late is `{"name", "answered": False, "error"}`."""
    import ray

    order = list(names)
    asked: dict[str, Any] = {}
    answers: dict[str, dict[str, Any]] = {}
    for name in order:
        try:
            asked[name] = ray.get_actor(name, namespace=namespace).status.remote()
        except Exception as exc:
            answers[name] = _unanswered(name, _reason(exc))
    done: set[Any] = set()
    if asked:  # Ray refuses to wait for nothing
        done.update(ray.wait(list(asked.values()), num_returns=len(asked), timeout=timeout_s)[0])
    for name, ref in asked.items():
        if ref not in done:
            answers[name] = _unanswered(name, f"no answer within {timeout_s:g} s")
            continue
        try:
            answers[name] = {"name": name, **ray.get(ref, timeout=0), "answered": True}
        except Exception as exc:
            answers[name] = _unanswered(name, _reason(exc))
    return [answers[name] for name in order]


def _unanswered(name: str, why: str) -> dict[str, Any]:
    return {"name": name, "answered": False, "error": why}


def _reason(exc: BaseException) -> str:
    """The first line of an error, which for Ray's errors is the one that names it."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _shard_order(name: str) -> tuple[int, int]:
    match = SHARD_NAME.match(name)
    assert match is not None
    return _SHARD_KINDS.index(match[1]), int(match[2])


def shard_row(answer: dict[str, Any]) -> dict[str, Any]:
    """A shard's answer with its kind and index, whether or not it answered."""
    match = SHARD_NAME.match(answer["name"])
    kind, index = (match[1], int(match[2])) if match else ("unknown", -1)
    return {"kind": kind, "index": index, **answer}


def _value(item: Any) -> Any:
    """An enum's value (Serve's statuses are `str` enums, which `str()` spells with their
    class name)."""
    return getattr(item, "value", item)


def serve_summary(details: dict[str, Any]) -> dict[str, Any]:
    """Serve's instance details cut to what an operator watches: each application's
    status, each deployment's status, running and target replicas, and each replica."""
    applications = {}
    for app_name, app in (details.get("applications") or {}).items():
        deployments = {}
        for dep_name, dep in (app.get("deployments") or {}).items():
            replicas = [
                {
                    "replica_id": r.get("replica_id"),
                    "state": _value(r.get("state")),
                    "node_ip": r.get("node_ip"),
                    "pid": r.get("pid"),
                }
                for r in dep.get("replicas") or []
            ]
            status = _value(dep.get("status"))
            deployments[dep_name] = {
                "status": status,
                "healthy": status == "HEALTHY",
                "running": sum(r["state"] == "RUNNING" for r in replicas),
                "target": dep.get("target_num_replicas"),
                "message": dep.get("message") or "",
                "replicas": replicas,
            }
        applications[app_name] = {
            "status": _value(app.get("status")),
            "message": app.get("message") or "",
            "route_prefix": app.get("route_prefix"),
            "deployments": deployments,
        }
    proxies = {
        node: {"status": _value(p.get("status")), "node_ip": p.get("node_ip")}
        for node, p in (details.get("proxies") or {}).items()
    }
    return {"running": True, "applications": applications, "proxies": proxies}


_CONSUMER_SUMS = ("applied", "duplicates", "dead_lettered", "retries", "crashes")


def consumer_groups(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consumer members' answers folded per group: members, how many answered, records
    behind (the sum of what members measured; None until one has), and their counters.
    A member that did not answer joins the group its siblings named."""
    members = [w for w in workers if "member" in w or w["name"].startswith("nova-consumer-")]
    group_of = {_member_stem(w["name"]): w["consumer"] for w in members if "consumer" in w}
    groups: dict[str, dict[str, Any]] = {}
    for member in members:
        stem = _member_stem(member["name"])
        name = member.get("consumer") or group_of.get(stem) or stem
        group = groups.setdefault(name, _new_group(name))
        group["members"] += 1
        group["answered"] += bool(member.get("answered"))
        group["partitions"] += len(member.get("assignment") or ())
        behind = member.get("records_behind")
        if isinstance(behind, int):
            group["records_behind"] = (group["records_behind"] or 0) + behind
        for key in _CONSUMER_SUMS:
            group[key] += int(member.get(key) or 0)
    return sorted(groups.values(), key=lambda g: str(g["consumer"]))


def _new_group(name: str) -> dict[str, Any]:
    group: dict[str, Any] = {"consumer": name, "members": 0, "answered": 0, "partitions": 0}
    return {**group, "records_behind": None, **dict.fromkeys(_CONSUMER_SUMS, 0)}


def _member_stem(member: str) -> str:
    """`nova-consumer-fanoutconsumer-1` → `nova-consumer-fanoutconsumer`."""
    return member.rpartition("-")[0] or member


async def _outbox_report(db: Any) -> dict[str, Any]:
    from storage.kafka.dead_letters import pending_count
    from storage.outbox.broker_loss import broker_state
    from storage.outbox.claims import outbox_lag

    return {
        **await outbox_lag(db),
        **await broker_state(db),
        "pending_dead_letters": await pending_count(db),
    }


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str)


def watch(
    refresh: Callable[[], str],
    interval_s: float,
    *,
    rounds: int | None = None,
    write: Callable[[str], object] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write `refresh()` on a cleared screen every `interval_s` until Ctrl-C (or `rounds`
    times, for a test)."""
    done = 0
    try:
        while rounds is None or done < rounds:
            frame = refresh()
            write(_CLEAR_SCREEN + frame)
            done += 1
            if rounds is None or done < rounds:
                sleep(interval_s)
    except KeyboardInterrupt:
        pass
    return 0


@contextlib.contextmanager
def report_stdout() -> Iterator[TextIO]:
    """Standard output for the report alone: Ray's driver prints the cluster's warnings
    (the raylet's, to every driver) on `sys.stdout` from a thread of its own, which would
    break `--json` for a script; while this is open they go to standard error."""
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield out
    finally:
        sys.stdout = out


def cmd_status(args: argparse.Namespace) -> int:
    from deployments.cli.status_view import render_text

    probe = StatusProbe()
    as_text = as_json if args.json else render_text

    def refresh() -> str:
        return as_text(probe.report())

    with report_stdout() as out:
        if args.watch is None:
            print(refresh(), file=out, flush=True)
            return 0
        return watch(refresh, args.watch, write=lambda frame: print(frame, file=out, flush=True))
