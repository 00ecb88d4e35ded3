"""Author diversity in a ranked list: no more than `max_run` consecutive posts by one author."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def diversify(items: Sequence[T], author_of: Sequence[Hashable], *, max_run: int = 2) -> list[T]:
    """Reorder best-first `items` so that no author has more than `max_run` in a row.

    Greedy: take the best remaining item that does not extend a run past `max_run`. When
    only the running author's items remain, they follow in order: no other item exists to
    break the run, and dropping them would empty the feed of a one-author timeline.
    """
    pending = list(range(len(items)))
    order: list[int] = []
    while pending:
        run_author = author_of[order[-1]] if order else None
        run = 0
        for index in reversed(order):
            if author_of[index] != run_author:
                break
            run += 1
        pick = 0
        if run >= max_run:
            pick = next((i for i, index in enumerate(pending) if author_of[index] != run_author), 0)
        order.append(pending.pop(pick))
    return [items[index] for index in order]


def final_order(
    scores: Sequence[float], authors: Sequence[Hashable], seen: Sequence[bool]
) -> list[int]:
    """Indexes of a ranked page: best score first (ties keep the given order), posts not
    yet seen before seen ones, then author diversity over the whole list, so that no run
    forms where the two parts meet."""
    best_first = sorted(range(len(scores)), key=lambda i: -scores[i])
    order = [i for i in best_first if not seen[i]] + [i for i in best_first if seen[i]]
    return diversify(order, [authors[i] for i in order])
