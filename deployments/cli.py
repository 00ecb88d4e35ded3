"""The `nova` command: run the stack, deploy, operate the outbox and the dead-letter queue.

nova up                      start the embedded stack (or use the URLs set) and deploy
nova stop                    stop what `nova up` started
nova status                  what runs, outbox lag, relays
nova deploy                  deploy to the Ray cluster at RAY_ADDRESS (cluster.yaml)
nova test [PYTEST ARGS]      lint, type-check and run the whole suite on a test stack
nova db migrate              apply pending migrations
nova outbox replay --since T re-send events committed since T (consumers dedupe)
nova dlq list | replay       inspect and replay dead letters
nova models ...              register, list, route and roll back ranking models
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from deployments.stack import LOCALHOST, Stack, StackError, dev_layout, read_env_file

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _client_environment() -> None:
    """Load the dev stack's URLs into this process unless the caller set them."""
    for key, value in read_env_file(dev_layout().env_file).items():
        os.environ.setdefault(key, value)


def _settings() -> Any:
    _client_environment()
    from deployments.settings import Settings

    return Settings.from_env()


def _with_db(action: Callable[[Any], Awaitable[T]]) -> T:
    from storage.db import Database

    async def run() -> T:
        db = await Database.connect(_settings(), application_name="nova-cli")
        try:
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(run())


def _connect_ray(env: dict[str, str]) -> None:
    os.environ.update({k: v for k, v in env.items() if k.startswith(("RAY_", "NOVA_"))})
    import ray

    ray.init(
        address=env["RAY_ADDRESS"],
        namespace="nova",
        log_to_driver=False,
        logging_level=logging.WARNING,
    )


# -- commands --------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    layout = dev_layout()
    stack = Stack(layout)
    print(f"state dir: {layout.state_dir}", flush=True)
    env = stack.up()
    for part, state in stack.status().items():
        print(f"  {part:<11} {state}", flush=True)
    if not args.no_deploy:
        _deploy(env, http_port=layout.http_port, grpc_port=layout.grpc_port)
    # Reset and verification mail lands here (a Maildir) when the SMTP server is embedded.
    mail = f"  Mail       {layout.mail_dir}  (Maildir)\n" if stack.embedded()["smtp"] else ""
    print(
        f"\nNova is up.\n"
        f"  GraphQL    http://{LOCALHOST}:{layout.http_port}/graphql"
        "  (WebSocket on the same path)\n"
        f"  Readiness  http://{LOCALHOST}:{layout.http_port}/readyz\n"
        f"  gRPC       {LOCALHOST}:{layout.grpc_port}  (Ranker.Rank, FeatureStore.GetFeatures;"
        " metadata application=ranking)\n"
        f"  Dashboard  http://{LOCALHOST}:{layout.dashboard_port}  "
        f"(token: {stack.ray.token_file})\n"
        f"{mail}"
        f"  Stop with  nova stop   (or .venv/bin/nova stop)\n",
        flush=True,
    )
    return 0


def _deploy(
    env: dict[str, str],
    *,
    http_port: int | None,
    http_host: str = LOCALHOST,
    grpc_port: int | None = None,
) -> None:
    _connect_ray(env)
    from deployments.app import deploy
    from deployments.settings import Settings

    settings = Settings.from_env(env)
    if grpc_port is not None:
        settings = settings.replace(grpc_port=grpc_port)
    port = settings.http_port if http_port is None else http_port
    mismatched = deploy(settings, http_host=http_host, http_port=port)
    for topic, partitions in mismatched.items():
        print(
            f"  warning: topic {topic} has {partitions} partitions, catalogue differs",
            file=sys.stderr,
        )
    print("  deployed: gateway, ranking, relays, consumers, shards", flush=True)


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy to an existing Ray cluster; every URL comes from the environment."""
    missing = [
        k
        for k in ("NOVA_DATABASE_URL", "NOVA_REDIS_URL", "NOVA_KAFKA_BOOTSTRAP", "RAY_ADDRESS")
        if k not in os.environ
    ]
    if missing:
        print(f"nova deploy needs {', '.join(missing)} in the environment", file=sys.stderr)
        return 2
    _deploy(dict(os.environ), http_port=args.http_port, http_host=args.http_host)
    return 0


def cmd_stop(_: argparse.Namespace) -> int:
    stopped = Stack(dev_layout()).down()
    print(f"stopped: {', '.join(stopped) or 'nothing'}")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    layout = dev_layout()
    stack = Stack(layout)
    report: dict[str, Any] = {"state_dir": str(layout.state_dir), "parts": stack.status()}
    if report["parts"]["postgresql"] != "stopped":
        try:
            report["outbox"] = _with_db(_outbox_report)
        except Exception as exc:
            report["outbox"] = f"unreachable: {exc}"
    if report["parts"]["ray"] != "stopped":
        report["workers"] = _worker_report(stack)
    print(json.dumps(report, indent=2, default=str))
    return 0


async def _outbox_report(db: Any) -> dict[str, Any]:
    from storage.outbox.relay import outbox_lag

    lag = await outbox_lag(db)
    row = await db.fetchrow("SELECT epoch, reset_at, reset_reason FROM broker_state")
    dead = await db.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
    return {
        **lag,
        "broker_epoch": row["epoch"],
        "last_broker_reset": row["reset_at"],
        "pending_dead_letters": dead,
    }


def _worker_report(stack: Stack) -> Any:
    try:
        _connect_ray(stack.environment())
        import ray

        from deployments.workers import NAMESPACE

        actors = [
            a
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE and a["name"].startswith("nova-")
        ]
        handles = [ray.get_actor(a["name"], namespace=NAMESPACE) for a in actors]
        return ray.get([h.status.remote() for h in handles], timeout=10)
    except Exception as exc:
        return f"unreachable: {exc}"


def cmd_db_migrate(_: argparse.Namespace) -> int:
    from storage.kafka.topics import sync_catalogue
    from storage.migrate import migrate

    async def run(db: Any) -> list[str]:
        conn = await db.connect_raw()
        try:
            applied: list[str] = await migrate(conn)
            async with conn.transaction():
                await sync_catalogue(conn, max_partitions=db.settings.kafka_max_partitions)
        finally:
            await conn.close()
        return applied

    applied = _with_db(run)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def parse_since(text: str) -> datetime:
    """`2026-11-22T10:00:00+00:00`, or a relative `15m`, `2h`, `7d`."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if text and text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected an ISO time (2026-11-22T10:00:00Z) or 15m / 2h / 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    from storage.outbox.rows import redrive

    async def run(db: Any) -> int:
        async with db.transaction() as conn:
            count: int = await redrive(conn, since=args.since)
        return count

    count = _with_db(run)
    print(f"re-driving {count} events committed since {args.since.isoformat()}")
    return 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from storage.kafka.dead_letters import list_dead_letters

    letters = _with_db(
        lambda db: list_dead_letters(
            db, consumer=args.consumer, include_replayed=args.all, limit=args.limit
        )
    )
    if args.json:
        print(json.dumps([d.to_dict() for d in letters], indent=2))
        return 0
    if not letters:
        print("no dead letters")
    for d in letters:
        state = f"replayed {d.replayed_at:%Y-%m-%d %H:%M:%S}" if d.replayed_at else "pending"
        print(
            f"#{d.id} {d.failed_at:%Y-%m-%d %H:%M:%S} {d.consumer} {d.topic}[{d.partition}]@"
            f"{d.offset} event={d.event_id} attempts={d.attempts} {state}\n    {d.error}"
        )
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from storage.kafka.dead_letters import replay

    if not args.ids and not args.consumer:
        print("name dead letters: --id N (repeatable) and/or --consumer NAME", file=sys.stderr)
        return 2
    replayed = _with_db(lambda db: replay(db, ids=args.ids or None, consumer=args.consumer))
    print(f"replayed: {', '.join(map(str, replayed)) or 'none pending'}")
    return 0


def cmd_keys_rotate(_: argparse.Namespace) -> int:
    from gateway.auth.tokens import rotate_signing_key
    from storage.secrets import Sealer

    settings = _settings()
    kid = _with_db(lambda db: rotate_signing_key(db, Sealer.from_settings(settings)))
    print(f"new signing key {kid}")
    return 0


def cmd_users_grant(args: argparse.Namespace) -> int:
    from gateway.auth.identity import grant_role
    from gateway.services.caches import Invalidations
    from gateway.services.users import UserCache
    from storage.errors import InvalidInput
    from storage.redis_client import make_redis

    settings = _settings()

    async def run(db: Any) -> Any:
        user = await grant_role(db, args.user, args.role)
        redis = make_redis(settings)
        try:  # every gateway replica drops its cached copy
            cache = UserCache(
                db, redis, Invalidations(redis), max_entries=1, local_ttl_s=1, redis_ttl_s=60
            )
            await cache.changed([user])
        finally:
            await redis.aclose()
        return user

    try:
        user = _with_db(run)
    except InvalidInput as exc:
        print(f"nova: {exc}", file=sys.stderr)
        return 2
    print(f"{user.username}: roles {', '.join(user.roles)} (in tokens issued from now on)")
    return 0


def cmd_queries_add(args: argparse.Namespace) -> int:
    """Register documents for persisted-query-only mode; prints each one's hash.

    Registered documents never expire (the APQ TTL is for documents clients send), and
    registering one again is harmless.
    """
    from gateway.transport.apq import PersistedQueryStore, query_hash
    from storage.redis_client import make_redis

    settings = _settings()

    documents = {path: Path(path).read_text() for path in args.files}

    async def run() -> list[str]:
        redis = make_redis(settings)
        store = PersistedQueryStore(redis, ttl_s=settings.persisted_query_ttl_s)
        try:
            hashes = []
            for path, query in documents.items():
                sha = query_hash(query)
                await store.register(sha, query)
                hashes.append(f"{sha}  {path}")
            return hashes
        finally:
            await redis.aclose()

    for line in asyncio.run(run()):
        print(line)
    return 0


def cmd_config(_: argparse.Namespace) -> int:
    """Print every setting, layer by layer: variable, default, meaning (the table in
    docs/operations.md, which a test keeps equal to this)."""
    from deployments.settings import settings_table

    print(settings_table())
    return 0


SCHEMA_FILE = REPO_ROOT / "schema.graphql"


def served_schema() -> str:
    """The GraphQL schema the gateway serves, as SDL (the text of `schema.graphql`)."""
    from gateway.schema.root import schema

    return schema.as_str() + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the served schema to `schema.graphql`, or with `--check` fail when they differ:
    the file is the public contract clients and reviewers read."""
    path = Path(args.output)
    text = served_schema()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(
                f"nova: {path} differs from the served schema; run `nova schema`", file=sys.stderr
            )
            return 1
        print(f"{path} matches the served schema")
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Lint, type-check, then the whole suite (its fixtures start the test stack)."""
    python = sys.executable
    steps = [
        ("ruff", [python, "-m", "ruff", "check", "."]),
        ("mypy", [python, "-m", "mypy"]),
        ("pytest", [python, "-m", "pytest", *args.pytest_args]),
    ]
    for name, cmd in steps:
        print(f"==> {name}: {' '.join(cmd[1:])}", flush=True)
        code = subprocess.call(cmd, cwd=REPO_ROOT)
        if code != 0:
            # pytest exits 5 when no test ran: that is a failure too.
            print(f"==> {name} failed (exit {code})", flush=True)
            return code or 1
    return 0


# -- parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nova", description="Nova: run, deploy and operate.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the embedded stack and deploy Nova")
    up.add_argument("--no-deploy", action="store_true", help="start the servers only")
    up.set_defaults(func=cmd_up)
    sub.add_parser("stop", help="stop what `nova up` started").set_defaults(func=cmd_stop)
    sub.add_parser("status", help="what runs, and the outbox lag").set_defaults(func=cmd_status)

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
    grant.set_defaults(func=cmd_users_grant)

    queries = sub.add_parser("queries", help="persisted queries").add_subparsers(
        dest="queries_command", required=True
    )
    add = queries.add_parser("add", help="register .graphql documents (persisted-only mode)")
    add.add_argument("files", nargs="+")
    add.set_defaults(func=cmd_queries_add)

    from ranking.cli import add_commands as add_model_commands
    from ranking.cli import add_feature_commands

    add_model_commands(sub, with_db=_with_db, settings=_settings)
    add_feature_commands(sub, with_db=_with_db, settings=_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
