"""Time as the poller sees it: passed in, so tests run the schedule in virtual time.

:class:`SystemClock` is the real one. Everything the poller and scheduler do with
time goes through a :class:`Clock`: reading the monotonic and the wall clock, and
waiting for an event at most so long.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never steps (schedules, deadlines)."""
        ...

    def wall(self) -> float:
        """Unix seconds (what is published: last success, reading ages)."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """``event.wait(timeout)`` on this clock: True if the event was set."""
        ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)


SYSTEM_CLOCK = SystemClock()
