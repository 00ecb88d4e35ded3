"""A/B routing: splits hold over many users, assignments are sticky, bad splits refused."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from ranking.routing import InvalidSplit, bucket, choose, parse_split

USERS = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(10_000)]


@pytest.mark.parametrize(
    "arms", [{"v1": 90.0, "v2": 10.0}, {"v1": 50.0, "v2": 50.0}, {"a": 70.0, "b": 20.0, "c": 10.0}]
)
def test_a_split_holds_within_three_points_over_ten_thousand_users(
    arms: dict[str, float],
) -> None:
    counts = Counter(choose(arms, "home", user) for user in USERS)
    for version, percent in arms.items():
        share = 100 * counts[version] / len(USERS)
        assert abs(share - percent) <= 3.0, (version, share, percent)


def test_assignment_is_sticky_and_growing_a_split_keeps_the_treated_users() -> None:
    small = {"v1": 90.0, "v2": 10.0}
    large = {"v1": 80.0, "v2": 20.0}
    first = {user: choose(small, "home", user) for user in USERS}
    assert first == {user: choose(small, "home", user) for user in USERS}
    treated = [user for user, version in first.items() if version == "v2"]
    assert treated
    assert all(choose(large, "home", user) == "v2" for user in treated)


def test_experiments_draw_independent_buckets() -> None:
    # The same users are not always the treated 10% of every experiment.
    a = {user for user in USERS if bucket("home", user) < 1000}
    b = {user for user in USERS if bucket("notifications", user) < 1000}
    assert 0 < len(a & b) < len(a) / 2


def test_a_zero_arm_gets_nobody() -> None:
    assert {choose({"v1": 0.0, "v2": 100.0}, "home", u) for u in USERS[:500]} == {"v2"}


@pytest.mark.parametrize(
    "terms",
    [
        [],
        ["v1=90"],
        ["v1=90", "v2=20"],
        ["v1"],
        ["v1=abc"],
        ["v1=50", "v1=50"],
        ["v1=-5", "v2=105"],
    ],
)
def test_bad_splits_are_refused(terms: list[str]) -> None:
    with pytest.raises(InvalidSplit):
        parse_split(terms)


def test_a_split_parses_in_order() -> None:
    assert list(parse_split(["v2=10", "v1=90"]).items()) == [("v2", 10.0), ("v1", 90.0)]
