"""Author diversity: never more than two consecutive posts by one author when avoidable."""

from __future__ import annotations

from ranking.diversity import diversify, final_order


def longest_run(authors: list[str]) -> int:
    best = run = 0
    for index, author in enumerate(authors):
        run = run + 1 if index and authors[index - 1] == author else 1
        best = max(best, run)
    return best


def test_runs_are_broken_with_the_next_best_other_author() -> None:
    items = ["a1", "a2", "a3", "a4", "b1", "c1"]
    authors = [i[0] for i in items]
    assert diversify(items, authors) == ["a1", "a2", "b1", "a3", "a4", "c1"]


def test_order_is_kept_when_already_diverse() -> None:
    items = ["a1", "b1", "a2", "a3", "c1"]
    assert diversify(items, [i[0] for i in items]) == items


def test_one_author_left_follows_in_order_rather_than_being_dropped() -> None:
    items = ["a1", "a2", "a3", "a4", "b1"]
    out = diversify(items, [i[0] for i in items])
    assert out == ["a1", "a2", "b1", "a3", "a4"]
    assert sorted(out) == sorted(items)


def test_runs_past_two_happen_only_when_one_author_is_left() -> None:
    items = [f"{author}{n}" for author in "abcd" for n in range(5)]  # grouped by author
    out = diversify(items, [i[0] for i in items])
    authors = [i[0] for i in out]
    assert sorted(out) == sorted(items)
    for index in range(2, len(authors)):
        if authors[index] == authors[index - 1] == authors[index - 2]:
            assert set(authors[index:]) == {authors[index]}, authors
    assert longest_run(authors[:15]) <= 2


def test_a_page_is_best_first_unseen_first_and_diverse() -> None:
    scores = [0.9, 0.8, 0.7, 0.95, 0.6, 0.5]
    authors = ["a", "a", "a", "b", "a", "c"]
    seen = [False, False, False, True, False, False]
    order = final_order(scores, authors, seen)
    # Unseen by score: 0 (a), 1 (a), 2 (a), 4 (a), 5 (c); then seen 3 (b).
    # Diversity pulls c forward after two a's; b (seen) breaks the next run of a's.
    assert order == [0, 1, 5, 2, 4, 3]
    assert sorted(order) == list(range(6))


def test_equal_scores_keep_the_candidates_order() -> None:
    assert final_order([0.5, 0.5, 0.5], ["a", "b", "c"], [False] * 3) == [0, 1, 2]
