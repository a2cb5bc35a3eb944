"""Request pacing: a process-wide rate limit and a per-token back-off gate.

The vendor limits per token, so a 429 for one token holds back every request
carrying that token (until its ``Retry-After``), not only the target that got it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class RateLimiter:
    """Spaces requests evenly (no bursts), so any one second holds at most
    ``rate`` requests while the limit is still used almost fully.
    ``rate <= 0`` means unlimited."""

    # Exactly 1/rate apart, rate+1 requests can land inside one closed second
    # (at 0 and at 1.0), and network jitter can bunch them further; 5 % slack
    # keeps every 1 s window of arrivals within the limit.
    SLACK = 1.05

    def __init__(self, rate: float, clock: Clock = time.monotonic) -> None:
        self._configured = rate if rate > 0 else 0.0
        self._interval = self.SLACK / rate if rate > 0 else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        """The configured limit (requests per second; 0 = unlimited)."""
        return self._configured

    def reserve(self) -> float:
        """Claim the next slot; returns the monotonic instant the caller may send at."""
        if not self._interval:
            return self._clock()
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
            return slot

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a slot. False if ``stop`` was set while waiting."""
        delay = self.reserve() - self._clock()
        return not (delay > 0 and stop.wait(delay))


class TokenGate:
    """Per-token "not before" instants set by 429 answers."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._not_before: dict[str, float] = {}
        self._lock = threading.Lock()

    def hold(self, token: str, seconds: float) -> None:
        until = self._clock() + seconds
        with self._lock:
            if until > self._not_before.get(token, 0.0):
                self._not_before[token] = until

    def delay(self, token: str) -> float:
        with self._lock:
            until = self._not_before.get(token)
            if until is None:
                return 0.0
            remaining = until - self._clock()
            if remaining <= 0:
                del self._not_before[token]  # keep the map small
                return 0.0
            return remaining

    def wait(self, token: str, stop: threading.Event) -> bool:
        """Wait until ``token`` may be used. False if ``stop`` was set."""
        while (remaining := self.delay(token)) > 0:
            if stop.wait(remaining):
                return False
        return True
