"""Request pacing: a process-wide rate limit and a per-token back-off gate.

The vendor limits per token, so a 429 for one token holds back every request
carrying that token (until its ``Retry-After``), not only the target that got it.
A hold is capped (``lynx.retry_after_max``): one answer asking for ten years must
not silence a token until the process restarts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
DEFAULT_MAX_HOLD = 300.0  # seconds; lynx.retry_after_max's default


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
    """Per-token "not before" instants set by 429 answers, each at most
    ``max_hold`` seconds ahead."""

    def __init__(self, clock: Clock = time.monotonic, max_hold: float = DEFAULT_MAX_HOLD) -> None:
        self._clock = clock
        self._max_hold = max_hold
        self._not_before: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def max_hold(self) -> float:
        return self._max_hold

    def hold(self, token: str, seconds: float) -> None:
        """Hold ``token`` for ``seconds`` (capped; NaN or negative holds nothing)."""
        if not seconds > 0:  # also false for NaN
            return
        until = self._clock() + min(seconds, self._max_hold)
        with self._lock:
            if until > self._not_before.get(token, -math.inf):
                self._not_before[token] = until

    def delay(self, token: str) -> float:
        """Seconds ``token`` is still held (0 when free)."""
        until = self.held_until(token)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def held_until(self, token: str) -> float | None:
        """The monotonic instant ``token`` is free again, or None when it is free.
        The very instant the hold was set to: every poll deferred by one hold
        gets the same one, so the poller releases them in the order it chose."""
        with self._lock:
            until = self._not_before.get(token)
            if until is None:
                return None
            if until <= self._clock():
                del self._not_before[token]  # keep the map small
                return None
            return until

    def wait(self, token: str, stop: threading.Event) -> bool:
        """Wait until ``token`` may be used. False if ``stop`` was set."""
        while (remaining := self.delay(token)) > 0:
            if stop.wait(remaining):
                return False
        return True
