"""A progress bar on stderr, drawn only when stderr is a terminal (a pipe or a
log file gets nothing), with the standard library only."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from exporter.config.validate import format_duration

REDRAW_EVERY = 0.1  # seconds


def render_bar(done: int, total: int, elapsed: float, width: int = 30) -> str:
    """``[#########---------]  50%  5/10 queries  12s left``. Pure."""
    fraction = done / total if total else 1.0
    filled = int(fraction * width)
    text = f"[{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}  {done}/{total} queries"
    if 0 < done < total:
        left = round(elapsed / done * (total - done))
        text += f"  {format_duration(left) if left else '0s'} left"
    return text


class Progress:
    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.clock = clock
        self.total = 0
        self.done = 0
        self.started = clock()
        self.drawn_at = -REDRAW_EVERY
        self.width = 0  # of the last line drawn, to blank it

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, self.clock()
        self._draw(force=True)

    def advance(self) -> None:
        self.done += 1
        self._draw(force=self.done == self.total)

    def finish(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0

    def _draw(self, *, force: bool) -> None:
        now = self.clock()
        if not self.enabled or (not force and now - self.drawn_at < REDRAW_EVERY):
            return
        self.drawn_at = now
        line = render_bar(self.done, self.total, now - self.started)
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)
