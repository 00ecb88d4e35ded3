"""The `nova` command line: every subcommand, its arguments, and the function it runs."""

from __future__ import annotations

import argparse
import os
import sys

from deployments.cli.audit import cmd_audit
from deployments.cli.backup import add_commands as add_backup_commands
from deployments.cli.certs import add_commands as add_certs_commands
from deployments.cli.common import parse_since
from deployments.cli.demo import add_commands as add_demo_commands
from deployments.cli.models import add_commands as add_model_commands
from deployments.cli.models import add_feature_commands
from deployments.cli.operations import (
    cmd_db_migrate,
    cmd_dlq_list,
    cmd_dlq_replay,
    cmd_keys_rotate,
    cmd_outbox_replay,
    cmd_queries_add,
    cmd_users_grant,
)
from deployments.cli.stack import (
    SCHEMA_FILE,
    cmd_bench,
    cmd_config,
    cmd_deploy,
    cmd_schema,
    cmd_stop,
    cmd_test,
    cmd_up,
)
from deployments.cli.status import cmd_status, positive_seconds
from deployments.cli.top import cmd_top
from deployments.stack import LOCALHOST, PRIVATE_UMASK, StackError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nova", description="Nova: run, deploy and operate.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the embedded stack and deploy Nova")
    up.add_argument("--no-deploy", action="store_true", help="start the servers only")
    up.add_argument("--no-web", action="store_true", help="do not build the web client (API only)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("stop", help="stop what `nova up` started").set_defaults(func=cmd_stop)
    status = sub.add_parser(
        "status", help="parts, Serve, shards, consumers' lag, the outbox and the workers"
    )
    status.add_argument("--json", action="store_true", help="the full report as JSON")
    status.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=positive_seconds,
        metavar="SECONDS",
        help="repeat every SECONDS (2 by default) until Ctrl-C",
    )
    status.set_defaults(func=cmd_status)
    top = sub.add_parser("top", help="the status live in the terminal, with rates")
    top.add_argument("--interval", type=positive_seconds, default=2.0, metavar="SECONDS")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(func=cmd_top)

    deploy = sub.add_parser("deploy", help="deploy to the Ray cluster at RAY_ADDRESS")
    deploy.add_argument("--http-port", type=int, help="default: NOVA_HTTP_PORT")
    deploy.add_argument(
        "--http-host",
        default=LOCALHOST,
        help="interface Serve's proxy listens on (0.0.0.0 behind a load balancer)",
    )
    deploy.set_defaults(func=cmd_deploy)

    sub.add_parser("config", help="print every setting: variable, default, meaning").set_defaults(
        func=cmd_config
    )

    schema = sub.add_parser("schema", help="write the served GraphQL schema to schema.graphql")
    schema.add_argument("--output", default=str(SCHEMA_FILE))
    schema.add_argument("--check", action="store_true", help="fail if the file differs")
    schema.set_defaults(func=cmd_schema)

    test = sub.add_parser("test", help="lint, type-check and run the test suite")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)
    bench = sub.add_parser(
        "bench", help="run the benchmarks, each on a fresh stack: one report, table and chart"
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="see python -m bench -h")
    bench.set_defaults(func=cmd_bench)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_db_migrate)

    outbox = sub.add_parser("outbox", help="the transactional outbox").add_subparsers(
        dest="outbox_command", required=True
    )
    replay = outbox.add_parser("replay", help="re-send events committed since a time")
    replay.add_argument(
        "--since", type=parse_since, required=True, help="ISO time or relative (15m, 2h, 7d)"
    )
    replay.set_defaults(func=cmd_outbox_replay)

    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(
        dest="dlq_command", required=True
    )
    dlq_list = dlq.add_parser("list", help="list dead letters (pending by default)")
    dlq_list.add_argument("--consumer")
    dlq_list.add_argument("--all", action="store_true", help="include replayed ones")
    dlq_list.add_argument("--limit", type=int, default=100)
    dlq_list.add_argument("--json", action="store_true")
    dlq_list.set_defaults(func=cmd_dlq_list)
    dlq_replay = dlq.add_parser("replay", help="send dead letters back to their consumer")
    dlq_replay.add_argument("--id", dest="ids", type=int, action="append")
    dlq_replay.add_argument("--consumer")
    dlq_replay.set_defaults(func=cmd_dlq_replay)

    keys = sub.add_parser("keys", help="JWT signing keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser(
        "rotate", help="add a new signing key; old ones verify until their tokens expire"
    ).set_defaults(func=cmd_keys_rotate)

    users = sub.add_parser("users", help="accounts").add_subparsers(
        dest="users_command", required=True
    )
    grant = users.add_parser("grant", help="give an account a role")
    grant.add_argument("user", help="username or email")
    grant.add_argument("role", choices=["user", "moderator", "admin"])
    grant.add_argument("--note", help="why (kept in the audit log)")
    grant.set_defaults(func=cmd_users_grant, revoke=False)
    revoke = users.add_parser("revoke", help="take a role from an account")
    revoke.add_argument("user", help="username or email")
    revoke.add_argument("role", choices=["user", "moderator", "admin"])
    revoke.add_argument("--note", help="why (kept in the audit log)")
    revoke.set_defaults(func=cmd_users_grant, revoke=True)

    audit = sub.add_parser("audit", help="the audit log: moderation actions and role changes")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)

    queries = sub.add_parser("queries", help="persisted queries").add_subparsers(
        dest="queries_command", required=True
    )
    add = queries.add_parser("add", help="register .graphql documents (persisted-only mode)")
    add.add_argument("files", nargs="+")
    add.set_defaults(func=cmd_queries_add)

    add_model_commands(sub)
    add_feature_commands(sub)
    add_demo_commands(sub)
    add_backup_commands(sub)
    add_certs_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # What the command writes (the embedded stack's state, its own Ray driver logs, model
    # artifacts) is its user's alone; the servers it starts inherit this.
    os.umask(PRIVATE_UMASK)
    if "RAY_ADDRESS" not in os.environ:
        # The embedded Ray is on loopback. Ray reads this once, at its first import.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except StackError as exc:
        print(f"nova: {exc}", file=sys.stderr)
        return 1
    return code
