"""Rendering that data cannot kill.

The data families and the landing page are rendered target by target; a target
whose samples or page row fail to render (a bug, or data the upstream boundary
should have refused) is shown as down instead, counted as a poll error of reason
``internal`` and logged once, when it starts failing and when it renders again.
Every other target, ``/``, ``/metrics`` and the health endpoints go on working.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from structlog.typing import FilteringBoundLogger

from exporter.targets import TargetKey

__all__ = ["RenderGuard"]

# Where a target is rendered: its series, or its rows of the HTML pages.
SURFACES = ("metrics", "page")


class RenderGuard:
    """Which targets fail to render, per surface; thread-safe."""

    def __init__(self, log: FilteringBoundLogger, count: Callable[[int, str], None]) -> None:
        self._log = log
        self._count = count  # (actor id, poll-error reason)
        self._lock = threading.Lock()
        self._failing: set[tuple[TargetKey, str]] = set()

    def failed(self, key: TargetKey, surface: str, error: BaseException) -> None:
        """``key`` could not be rendered on ``surface``: count and log it once."""
        with self._lock:
            if (key, surface) in self._failing:
                return
            self._failing.add((key, surface))
        self._count(key.actor_id, "internal")
        self._log.error(
            "target could not be rendered; shown as down",
            target=str(key),
            surface=surface,
            error=type(error).__name__,
        )

    def rendered(self, keys: Iterable[TargetKey], surface: str) -> None:
        """``keys`` rendered fine on ``surface``: the ones that failed before recover."""
        if not self._failing:  # the common case: one attribute read
            return
        with self._lock:
            back = [k for k in keys if (k, surface) in self._failing]
            self._failing.difference_update((k, surface) for k in back)
        for key in back:
            self._log.info("target rendered again", target=str(key), surface=surface)

    @property
    def failing(self) -> frozenset[tuple[TargetKey, str]]:
        with self._lock:
            return frozenset(self._failing)
