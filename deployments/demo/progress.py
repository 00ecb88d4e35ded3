"""A progress bar on stderr: one line redrawn with `\\r` on a terminal, a line per phase
otherwise (a log file should not fill with redraws)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
REDRAW_S = 0.2


class Progress:
    """`phase` names what runs now; `advance` counts finished steps out of `total`."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._phase = ""
        self._started = time.monotonic()
        self._drawn = 0.0

    def phase(self, name: str) -> None:
        if not self._tty and self._phase:
            self._line(end="\n")
        self._phase = name
        self._draw(force=True)

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        self._draw(force=self.done == self.total)

    def close(self) -> None:
        self._line(end="\n")

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if self._tty and (force or now - self._drawn >= REDRAW_S):
            self._drawn = now
            self._line(end="")

    def _line(self, *, end: str) -> None:
        share = self.done / self.total
        filled = int(WIDTH * share)
        elapsed = int(time.monotonic() - self._started)
        bar = "#" * filled + "." * (WIDTH - filled)
        text = f"[{bar}] {share:4.0%}  {elapsed // 60}:{elapsed % 60:02d}  {self._phase}"
        prefix = "\r\x1b[K" if self._tty else ""
        self._stream.write(prefix + text + end)
        self._stream.flush()
