"""`nova status` as tables: parts, Serve, shards, consumers, outbox and workers, from the
report `deployments.cli.status` gathers (the same dict `--json` prints). `nova top` shows
the same tables live.

Pure functions of the report: a section that could not be gathered is a string
(`"unreachable: ..."`) and is shown as one line instead of a table.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from deployments.cli.status import part_state

# What a shard of each kind holds in memory, for the "keys held" column.
KEY_UNITS = {"timeline": "timelines", "counter": "counters", "chat": "rooms"}
_WORKER_DETAILS = 6
_NOT_DETAILS = {"crashes", "answered", "pid", "member", "epoch", "records_behind"}


def _table(title: str, *columns: str, right: Iterable[str] = ()) -> Table:
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    aligned = set(right)
    for index, column in enumerate(columns):
        # Names (the first column) are what an operator copies: never cut them.
        table.add_column(
            column, justify="right" if column in aligned else "left", no_wrap=index == 0
        )
    return table


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _missing(title: str, section: Any) -> RenderableType:
    return Text(f"{title}: {section}", style="red")


def parts_table(parts: dict[str, Any], supervisor: dict[str, Any] | None = None) -> Table:
    supervised = (supervisor or {}).get("parts", {})
    table = _table("Parts", "part", "state", "detail")
    for name, value in parts.items():
        detail = ""
        if isinstance(value, dict):
            detail = ", ".join(f"{k} {v}" for k, v in value.items() if k not in {"state"})
        if name in supervised:
            detail = ", ".join(filter(None, (detail, supervision_detail(supervised[name]))))
        state = part_state(parts, name)
        style = "red" if state in {"stopped", "failed", "down"} else None
        table.add_row(name, Text(state, style=style or ""), detail)
    return table


def supervision_detail(watch: dict[str, Any]) -> str:
    """What the supervisor did for one server: its restarts, and why it is failing."""
    words = []
    if watch.get("restarts"):
        at = watch.get("last_restart_at")
        when = time.strftime(" (last %H:%M:%S)", time.localtime(at)) if at else ""
        words.append(f"restarted {watch['restarts']} times{when}")
    if watch.get("state") not in (None, "running"):
        words.append(f"supervisor: {watch['state']}")
    if watch.get("state") == "failing" and watch.get("last_error"):
        words.append(str(watch["last_error"]))
    return ", ".join(words)


def serve_table(serve: Any) -> RenderableType:
    if not isinstance(serve, dict):
        return _missing("Serve", serve)
    if not serve.get("running"):
        return Text("Serve: not started")
    table = _table(
        "Serve", "application / deployment", "status", "replicas", "message", right=["replicas"]
    )
    for app_name, app in serve["applications"].items():
        table.add_row(Text(app_name, style="bold"), _health(app["status"]), "", app["message"])
        for dep_name, dep in app["deployments"].items():
            replicas = f"{dep['running']}/{_number(dep['target'])}"
            table.add_row(f"  {dep_name}", _health(dep["status"]), replicas, dep["message"])
    proxies = serve.get("proxies") or {}
    if proxies:
        states = sorted(str(p["status"]) for p in proxies.values())
        table.caption = "proxies: " + ", ".join(
            f"{states.count(s)} {s}" for s in dict.fromkeys(states)
        )
        table.caption_justify = "left"
    return table


def _health(status: Any) -> Text:
    word = str(status)
    good = word in {"RUNNING", "HEALTHY"}
    return Text(word, style="green" if good else "yellow" if "ING" in word else "red")


def shard_state(shard: dict[str, Any]) -> str:
    if not shard.get("answered"):
        return "no answer"
    return str(shard.get("state", "ok"))


def shards_table(shards: Any) -> RenderableType:
    if not isinstance(shards, list):
        return _missing("Shards", shards)
    table = _table("Shards", "shard", "state", "keys held", "queue", "note", right=["queue"])
    for shard in shards:
        state = shard_state(shard)
        keys = shard.get("keys")
        held = "—" if keys is None else f"{keys:,} {KEY_UNITS.get(shard['kind'], 'keys')}"
        style = "red" if state == "no answer" else "yellow" if state != "ok" else ""
        table.add_row(
            shard["name"],
            Text(state, style=style),
            held,
            _number(shard.get("queue_depth")),
            str(shard.get("error") or ""),
        )
    if not shards:
        table.caption = "no shard actors"
    return table


def consumers_table(consumers: Any) -> RenderableType:
    if not isinstance(consumers, list):
        return _missing("Consumers", consumers)
    columns = ("consumer group", "members", "partitions", "lag", "applied")
    counts = ("dead-lettered", "retries", "crashes")
    table = _table("Consumers", *columns, *counts, right=[*columns[1:], *counts])
    for group in consumers:
        members = f"{group['answered']}/{group['members']}"
        behind = group["records_behind"]
        table.add_row(
            group["consumer"],
            Text(members, style="" if group["answered"] == group["members"] else "red"),
            _number(group["partitions"]),
            Text(_number(behind), style="yellow" if behind else ""),
            _number(group["applied"]),
            _number(group["dead_lettered"]),
            _number(group["retries"]),
            _number(group["crashes"]),
        )
    return table


def outbox_table(outbox: Any) -> RenderableType:
    if not isinstance(outbox, dict):
        return _missing("Outbox", outbox)
    columns = ("pending", "oldest", "dead letters", "broker epoch", "last broker reset")
    table = _table("Outbox", *columns, right=columns[:4])
    table.add_row(
        _number(outbox.get("pending")),
        f"{float(outbox.get('oldest_s') or 0.0):.1f} s",
        _number(outbox.get("pending_dead_letters")),
        _number(outbox.get("broker_epoch")),
        str(outbox.get("last_broker_reset") or "never"),
    )
    return table


def workers_table(workers: Any) -> RenderableType:
    """Relays, the media processor and the jobs (consumers have their own table)."""
    if not isinstance(workers, list):
        return _missing("Workers", workers)
    table = _table("Workers", "worker", "state", "crashes", "detail", right=["crashes"])
    for worker in workers:
        if "member" in worker or worker["name"].startswith("nova-consumer-"):
            continue
        state = shard_state(worker)
        table.add_row(
            worker["name"],
            Text(state, style="" if state == "ok" else "red"),
            _number(worker.get("crashes")),
            _worker_detail(worker),
        )
    return table


def _worker_detail(worker: dict[str, Any]) -> str:
    """Why it did not answer; else its non-zero counters and its last error, if any."""
    if not worker.get("answered"):
        return str(worker.get("error") or "")
    parts = [_details(worker)]
    last = worker.get("last_crash") or worker.get("last_error")
    if last:
        parts.append(f"last error: {last}")
    return "; ".join(part for part in parts if part)


def _details(worker: dict[str, Any]) -> str:
    numbers = [
        f"{key} {_number(value)}"
        for key, value in worker.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
        if key not in _NOT_DETAILS and value
    ]
    return ", ".join(numbers[:_WORKER_DETAILS])


def status_tables(report: dict[str, Any]) -> list[RenderableType]:
    """Every section of the report, in the order an operator reads them."""
    sections: list[RenderableType] = [
        Text(f"state dir {report['state_dir']}", style="dim"),
        parts_table(report["parts"], report.get("supervisor")),
    ]
    supervisor = report.get("supervisor")
    if supervisor is not None and not supervisor.get("running"):
        sections.append(Text("supervisor: not running (`nova up` starts it)", style="red"))
    for key, render in (
        ("serve", serve_table),
        ("shards", shards_table),
        ("consumers", consumers_table),
        ("outbox", outbox_table),
        ("workers", workers_table),
    ):
        if key in report:
            sections.append(render(report[key]))
    return sections


def render_text(report: dict[str, Any], width: int | None = None) -> str:
    """The tables as plain text, `width` columns wide (the terminal's by default)."""
    columns = width or shutil.get_terminal_size((120, 40)).columns
    out = io.StringIO()
    console = Console(file=out, width=columns, color_system=None, highlight=False)
    for section in status_tables(report):
        console.print(section)
        console.print()
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip("\n")
