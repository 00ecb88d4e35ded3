"""What every `nova` command shares: the dev stack's environment, settings, a database
for the length of one command, a Ray connection, and argument parsers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from deployments.settings import Settings
from deployments.stack import dev_layout, read_env_file
from storage.db import Database

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]


def client_environment() -> None:
    """Load the dev stack's URLs into this process unless the caller set them."""
    for key, value in read_env_file(dev_layout().env_file).items():
        os.environ.setdefault(key, value)


def load_settings() -> Settings:
    client_environment()
    return Settings.from_env()


def with_db(action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = await Database.connect(load_settings(), application_name="nova-cli")
        try:
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(run())


def connect_ray(env: dict[str, str]) -> None:
    os.environ.update({k: v for k, v in env.items() if k.startswith(("RAY_", "NOVA_"))})
    import ray

    ray.init(
        address=env["RAY_ADDRESS"],
        namespace="nova",
        log_to_driver=False,
        logging_level=logging.WARNING,
    )


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
