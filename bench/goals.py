"""The rows of the benchmark table: a figure of Nova's, the floor or baseline it is measured
against in the same run, their ratio, and the goal for that ratio.

A scenario reports its rows under `goals` (`Goal.to_dict`); `python -m bench` gathers
every scenario's rows into one table (`bench.table`). A ratio is figure over floor; which
way is better depends on the figure (a latency's ratio should be small, a throughput's
large), so a goal says which bound it sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TIMES = "\u00d7"  # the multiplication sign of "2.5 times"


@dataclass(frozen=True)
class Goal:
    """One row. `at_most` bounds a ratio from above (latencies, CPU), `at_least` from below
    (throughputs); a row with neither only reports (a first measurement). `also` is a
    condition the row needs besides its ratio (the offered rate delivered, counts exact),
    said in `note` when it fails."""

    row: str
    figure: float | None
    floor: float | None
    unit: str
    floor_name: str
    at_most: float | None = None
    at_least: float | None = None
    also: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.figure is None or self.floor is None or self.floor == 0:
            return None
        value = self.figure / self.floor
        return round(value, 3) if math.isfinite(value) else None

    @property
    def met(self) -> bool | None:
        """None for a row without a goal whose condition holds; False when the ratio is
        missing or the condition fails."""
        if self.at_most is None and self.at_least is None:
            return None if self.also else False
        ratio = self.ratio
        if ratio is None or not self.also:
            return False
        if self.at_most is not None and ratio > self.at_most:
            return False
        return not (self.at_least is not None and ratio < self.at_least)

    @property
    def goal(self) -> str:
        if self.at_most is not None:
            return f"≤ {self.at_most:g}{TIMES}"
        if self.at_least is not None:
            return f"≥ {self.at_least:g}{TIMES}"
        return "report"

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "figure": self.figure,
            "floor": self.floor,
            "unit": self.unit,
            "floor_name": self.floor_name,
            "ratio": self.ratio,
            "goal": self.goal,
            "at_most": self.at_most,
            "at_least": self.at_least,
            "met": self.met,
            "note": self.note,
        }
