"""`nova models ...` and `nova features rebuild`: the data scientist's commands.

nova models register PATH --name NAME --version V [--notes TEXT]
nova models list [NAME] [--json]
nova models route NAME V1=90 V2=10
nova models rollback NAME
nova models report NAME [--since 7d] [--json] [--plot FILE.png]
nova models evaluate NAME VERSION [--since 7d] [--held-out] [--json]
nova models train [--since 7d] [--name home] [--version V]
nova features rebuild
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployments.cli.common import load_settings, parse_since, with_db
from storage.errors import InvalidInput, NotFound


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def _split(route: Any) -> str:
    return " ".join(f"{version}={percent:g}" for version, percent in route.arms.items())


def add_commands(sub: Any) -> None:
    models = sub.add_parser("models", help="ranking models: register, route, roll back")
    commands = models.add_subparsers(dest="models_command", required=True)

    def guarded(action: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
        def run(args: argparse.Namespace) -> int:
            try:
                return action(args)
            except (InvalidInput, NotFound) as exc:
                print(f"nova models: {exc}", file=sys.stderr)
                return 2

        return run

    def register(args: argparse.Namespace) -> int:
        from ranking.registry import register as register_model

        store = Path(load_settings().model_store)
        model = with_db(
            lambda db: register_model(
                db,
                store,
                Path(args.path),
                name=args.name,
                version=args.version,
                created_by=args.created_by or _who(),
                notes=args.notes,
            )
        )
        print(
            f"registered {model.name} {model.version} ({model.format}, {model.size_bytes} "
            f"bytes, sha256 {model.checksum[:12]}, schema {model.schema_fingerprint})\n"
            f"serve it: nova models route {model.name} {model.version}=100"
        )
        return 0

    def list_models(args: argparse.Namespace) -> int:
        from ranking.registry import get_route, versions

        async def load(db: Any) -> tuple[list[Any], dict[str, Any]]:
            found = await versions(db, args.name)
            routes = {name: await get_route(db, name) for name in {m.name for m in found}}
            return found, routes

        found, routes = with_db(load)
        if args.json:
            print(
                json.dumps(
                    [
                        {**m.to_dict(), "traffic_percent": _share(routes.get(m.name), m.version)}
                        for m in found
                    ],
                    indent=2,
                )
            )
            return 0
        if not found:
            print("no models registered")
        for model in found:
            share = _share(routes.get(model.name), model.version)
            print(
                f"{model.name} {model.version:<12} {model.format:<5} "
                f"{share:>5g}% traffic  {model.created_at:%Y-%m-%d %H:%M} "
                f"by {model.created_by}  {model.notes}"
            )
        return 0

    def route(args: argparse.Namespace) -> int:
        from ranking.registry import route as set_route
        from ranking.routing import InvalidSplit, parse_split

        try:
            arms = parse_split(args.split)
        except InvalidSplit as exc:
            raise InvalidInput(str(exc)) from exc
        store = Path(load_settings().model_store)
        result = with_db(lambda db: set_route(db, args.name, arms, by=_who(), store=store))
        print(f"{result.name}: {_split(result)} (revision {result.revision}; live within a second)")
        return 0

    def rollback(args: argparse.Namespace) -> int:
        from ranking.registry import rollback as roll_back

        result = with_db(lambda db: roll_back(db, args.name, by=_who()))
        print(f"{result.name}: back to {_split(result)} (revision {result.revision})")
        return 0

    def report(args: argparse.Namespace) -> int:
        from ranking.report import report as build_report
        from ranking.report import timeline
        from storage.redis_client import make_redis

        async def run(db: Any) -> tuple[list[Any], Any]:
            redis = make_redis(db.settings)
            try:
                rows = await build_report(db, redis, args.name, args.since)
                if not args.plot:
                    return rows, None
                versions = [r.version for r in rows]
                return rows, await timeline(db, redis, args.name, args.since, versions)
            finally:
                await redis.aclose()

        rows, over_time = with_db(run)
        if over_time is not None:
            _plot(over_time, Path(args.plot), {r.version: _arm(r) for r in rows})
        if args.json:
            print(json.dumps([r.to_dict() for r in rows], indent=2))
            return 0
        if not rows:
            print(f"{args.name}: no versions routed and no impressions since {args.since:%F %R}")
        print(
            f"{'version':<16}{'impressions':>12}{'engaged':>9}{'rate':>8}{'95% CI':>17}"
            f"{'share':>8}{'route':>7}{'p50 ms':>9}{'p99 ms':>9}"
        )
        for r in rows:
            ci = f"{r.rate_ci95[0]:.3f}-{r.rate_ci95[1]:.3f}" if r.rate_ci95 else "-"
            print(
                f"{r.version:<16}{r.impressions:>12}{r.engaged:>9}{_num(r.engagement_rate):>8}"
                f"{ci:>17}{_pct(r.impression_share):>8}{r.route_percent:>6g}%"
                f"{_num(r.scoring_p50_ms):>9}{_num(r.scoring_p99_ms):>9}"
            )
        if over_time is not None:
            print(f"plot: {args.plot} (per {over_time.step})")
        return 0

    def evaluate(args: argparse.Namespace) -> int:
        from ranking.evaluate import evaluate as run_evaluation

        store = Path(load_settings().model_store)
        found = with_db(
            lambda db: run_evaluation(
                db, store, args.name, args.version, since=args.since, held_out=args.held_out
            )
        )
        if args.json:
            print(json.dumps(found.to_dict(), indent=2))
            return 0
        _print_evaluation(found)
        return 0

    def train(args: argparse.Namespace) -> int:
        import tempfile
        from datetime import UTC, datetime

        from ranking.train import train as run_training

        store = Path(load_settings().model_store)
        name = args.name or load_settings().ranking_model
        version = args.version or datetime.now(UTC).strftime("t%Y%m%d-%H%M%S")

        def progress(line: str) -> None:
            print(f"  {line}", flush=True)

        print(f"training {name} {version}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            model, metrics = with_db(
                lambda db: run_training(
                    db,
                    store,
                    since=args.since,
                    name=name,
                    version=version,
                    created_by=args.created_by or _who(),
                    progress=progress,
                    tmp_dir=Path(tmp),
                )
            )
        print(
            f"registered {model.name} {model.version}: held-out AUC {metrics['heldout_auc']} "
            f"(random {metrics['random_auc']})\n"
            f"try it on 10%: nova models route {model.name} <current>=90 {model.version}=10"
        )
        return 0

    p = commands.add_parser("register", help="validate and record a model version")
    p.add_argument("path", help="a .npz (Nova numpy format) or .onnx model file")
    p.add_argument("--name", required=True, help="model name, e.g. home")
    p.add_argument("--version", required=True, help="version label, e.g. v2")
    p.add_argument("--notes", default="", help="what changed, for the list")
    p.add_argument("--created-by", default=None, help="defaults to the current user")
    p.set_defaults(func=guarded(register))

    p = commands.add_parser("list", help="model versions and their traffic share")
    p.add_argument("name", nargs="?", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guarded(list_models))

    p = commands.add_parser("route", help="split a model's traffic: NAME v1=90 v2=10")
    p.add_argument("name")
    p.add_argument("split", nargs="+", metavar="VERSION=PERCENT")
    p.set_defaults(func=guarded(route))

    p = commands.add_parser("rollback", help="restore the split before the last change")
    p.add_argument("name")
    p.set_defaults(func=guarded(rollback))

    p = commands.add_parser("report", help="impressions, engagement and latency per version")
    p.add_argument("name")
    p.add_argument("--since", type=parse_since, default="7d", help="ISO time or 7d / 12h")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="also draw it over time")
    p.set_defaults(func=guarded(report))

    p = commands.add_parser("evaluate", help="AUC, NDCG@10, calibration on logged impressions")
    p.add_argument("name")
    p.add_argument("version", help="scored beside every version the route serves")
    p.add_argument("--since", type=parse_since, default="7d", help="ISO time or 7d / 12h")
    p.add_argument("--held-out", action="store_true", help="only users training holds out")
    p.add_argument("--json", action="store_true", help="with the reliability table")
    p.set_defaults(func=guarded(evaluate))

    p = commands.add_parser("train", help="train a logistic-regression baseline and register it")
    p.add_argument("--since", type=parse_since, default="7d", help="ISO time or 7d / 12h")
    p.add_argument("--name", default=None, help="defaults to NOVA_RANKING_MODEL (home)")
    p.add_argument("--version", default=None, help="defaults to t<UTC timestamp>")
    p.add_argument("--created-by", default=None, help="defaults to the current user")
    p.set_defaults(func=guarded(train))


def add_feature_commands(sub: Any) -> None:
    features = sub.add_parser("features", help="online ranking features in Redis")
    commands = features.add_subparsers(dest="features_command", required=True)

    def rebuild(args: argparse.Namespace) -> int:
        from ranking.feature_rebuild import rebuild as rebuild_features
        from storage.redis_client import make_redis

        async def run(db: Any) -> Any:
            redis = make_redis(load_settings())
            try:
                return await rebuild_features(
                    db, redis, load_settings(), progress=lambda line: print(line, flush=True)
                )
            finally:
                await redis.aclose()

        report = with_db(run)
        print(json.dumps(report.__dict__))
        return 0

    p = commands.add_parser("rebuild", help="recompute every feature from PostgreSQL")
    p.set_defaults(func=rebuild)


def _arm(row: Any) -> str:
    return f"{row.version} ({row.route_percent:g}% route)"


def _plot(over_time: Any, path: Path, labels: dict[str, str]) -> None:
    from ranking.plot import draw

    try:
        draw(over_time, path, labels=labels)
    except OSError as exc:
        raise InvalidInput(f"cannot write the plot: {exc}") from exc


def _print_evaluation(found: Any) -> None:
    rate = found.engaged / found.rows
    scope = ", held-out users only" if found.held_out else ""
    print(
        f"{found.name}: {found.rows} impressions with features since {found.since:%F %R}"
        f"{scope}, {found.engaged} engaged ({100 * rate:.1f}%), {found.viewers} viewers "
        f"({found.ndcg_viewers} with both engaged and not, for NDCG)"
    )
    print(
        f"{'version':<20}{'route':>7}{'rows':>8}{'AUC':>8}{'NDCG@10':>9}{'ECE':>8}"
        f"{'mean score':>12}{'engaged rate':>14}"
    )
    for v in found.versions:
        ece, mean_score = (
            (v.calibration.ece, v.calibration.mean_score) if v.calibration else (None, None)
        )
        label = f"{v.version} *" if v.version == found.version else v.version
        print(
            f"{label:<20}{v.route_percent:>6g}%{v.rows:>8}{v.auc:>8.3f}{_num(v.ndcg_at_10):>9}"
            f"{_num(ece):>8}{_num(mean_score):>12}{rate:>14.3f}"
        )
    print(
        f"{'(random order)':<20}{'':>7}{found.rows:>8}{0.5:>8.3f}"
        f"{_num(found.random_ndcg_at_10):>9}\n"
        f"* the version asked about; ECE and mean score: none for scores outside [0, 1]"
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _share(route: Any, version: str) -> float:
    if route is None:
        return 0.0
    return float(route.arms.get(version, 0.0))
