"""The simulator's own wall clock: real time, or an instant a test sets, from which
it runs on at a chosen rate (``POST /_sim/clock``), so a test can put the
simulated vendor just before a month's end, or anywhere in its history."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["SimClock"]

MAX_RATE = 1_000_000.0  # simulated seconds per real second


class SimClock:
    """Thread-safe. ``now()`` is Unix seconds: ``time.time()`` until :meth:`set`."""

    def __init__(
        self,
        real: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._real = real
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._set: tuple[float, float, float] | None = None  # (at, rate, monotonic then)

    def now(self) -> float:
        setting = self._set  # one read: set() swaps it whole
        if setting is None:
            return self._real()
        at, rate, since = setting
        return at + rate * (self._monotonic() - since)

    def set(self, at: float, rate: float = 1.0) -> None:
        """From now on, read ``at`` and advance ``rate`` seconds per real second
        (0: stand still)."""
        if not (math.isfinite(at) and 0 <= at < 253402300800):  # before year 10000
            raise ValueError("now must be Unix seconds between 1970 and 9999")
        if not (math.isfinite(rate) and 0 <= rate <= MAX_RATE):
            raise ValueError(f"rate must be between 0 and {MAX_RATE:g}")
        with self._lock:
            self._set = (at, rate, self._monotonic())

    def reset(self) -> None:
        """Back to real time."""
        with self._lock:
            self._set = None

    @property
    def rate(self) -> float:
        setting = self._set
        return 1.0 if setting is None else setting[1]

    @property
    def is_set(self) -> bool:
        return self._set is not None
