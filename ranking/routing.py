"""A/B routing: which model version serves a user, sticky per (user, model name).

Each user falls in one of 10,000 buckets by a hash of the model name and the user id; a
split gives each version a contiguous range of buckets in the order the split lists them.
The hash includes the name, so the users in one experiment's 10% are not the same users as
another's. Moving from 90/10 to 80/20 keeps everyone already on v2 on v2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

BUCKETS = 10_000


class InvalidSplit(ValueError):
    """A split that does not name versions with percentages summing to 100."""


def bucket(model_name: str, user_id: str) -> int:
    digest = hashlib.blake2b(f"{model_name}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def choose(arms: Mapping[str, float], model_name: str, user_id: str) -> str:
    """The version serving `user_id`. `arms` maps version → percentage, in split order."""
    point = bucket(model_name, user_id)
    edge = 0.0
    last = ""
    for version, percent in arms.items():
        if percent <= 0:
            continue
        edge += percent * BUCKETS / 100
        last = version
        if point < edge:
            return version
    if not last:
        raise InvalidSplit("the split gives no version any traffic")
    return last  # rounding: the last bucket belongs to the last arm


def parse_split(terms: list[str]) -> dict[str, float]:
    """`["v1=90", "v2=10"]` → {"v1": 90.0, "v2": 10.0}; refuses what does not sum to 100."""
    if not terms:
        raise InvalidSplit("give at least one VERSION=PERCENT")
    arms: dict[str, float] = {}
    for term in terms:
        version, sep, raw = term.partition("=")
        version = version.strip()
        if not sep or not version:
            raise InvalidSplit(f"{term!r}: expected VERSION=PERCENT")
        try:
            percent = float(raw)
        except ValueError as exc:
            raise InvalidSplit(f"{term!r}: {raw!r} is not a number") from exc
        if not 0 <= percent <= 100:
            raise InvalidSplit(f"{term!r}: a percentage is within 0..100")
        if version in arms:
            raise InvalidSplit(f"{version!r} appears twice")
        arms[version] = percent
    check_split(arms)
    return arms


def check_split(arms: Mapping[str, float]) -> None:
    total = sum(arms.values())
    if abs(total - 100.0) > 1e-6:
        raise InvalidSplit(f"percentages sum to {total:g}, not 100")
    if not any(percent > 0 for percent in arms.values()):
        raise InvalidSplit("the split gives no version any traffic")
