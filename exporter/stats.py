"""The exporter's own counters: API requests, request latency, poll errors,
deferred polls, the last round's length, reloads.

Kept as plain thread-safe counters (not client_python metric objects) so the
collector can render them deterministically, without ``_created`` series.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

# Every reason a poll can fail for; counters start at 0 for each configured
# actor so increase()/rate() see the very first error.
POLL_ERROR_REASONS: tuple[str, ...] = (
    "auth",
    "not_found",
    "client_error",
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "redirect",
    "bad_payload",
    "unknown_unit",
    "internal",
    "clock_skew",
)

# Why a poll waited instead of going out (it is neither sent nor failed meanwhile).
DEFERRAL_REASONS: tuple[str, ...] = ("rate_limited",)

# Upstream latency: from a fast LAN answer to the default 10 s timeout and beyond.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class StatsView:
    requests: Mapping[str, int]
    latency_counts: tuple[int, ...]  # per bucket (not cumulative), last = +Inf
    latency_sum: float
    poll_errors: Mapping[tuple[str, str], int]  # (actor_id, reason) -> count
    reload_successful: bool
    reload_success_timestamp: float
    deferrals: Mapping[str, int] = field(default_factory=dict)  # reason -> polls
    round_duration: float | None = None  # seconds of the last full round


class Stats:
    def __init__(self, started_at: float) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._poll_errors: dict[tuple[str, str], int] = {}
        self._poll_errors_version = 0
        self._reload_ok = True
        self._reload_ts = started_at
        self._deferrals = dict.fromkeys(DEFERRAL_REASONS, 0)
        self._round: float | None = None

    def observe_request(self, code: str, seconds: float) -> None:
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self._requests[code] = self._requests.get(code, 0) + 1
            self._latency[index] += 1
            self._latency_sum += seconds

    def count_poll_error(self, actor_id: int, reason: str) -> None:
        key = (str(actor_id), reason)
        with self._lock:
            self._poll_errors[key] = self._poll_errors.get(key, 0) + 1
            self._poll_errors_version += 1

    def count_deferral(self, reason: str) -> None:
        with self._lock:
            self._deferrals[reason] = self._deferrals.get(reason, 0) + 1

    def record_round(self, seconds: float) -> None:
        self._round = seconds  # one reference write: no lock needed

    @property
    def poll_errors_version(self) -> int:
        """Changes whenever a poll-error counter does (a cache key for renderings)."""
        return self._poll_errors_version  # one int read: no lock needed

    def record_reload(self, successful: bool, at: float) -> None:
        with self._lock:
            self._reload_ok = successful
            if successful:
                self._reload_ts = at

    def view(self) -> StatsView:
        with self._lock:
            return StatsView(
                requests=dict(self._requests),
                latency_counts=tuple(self._latency),
                latency_sum=self._latency_sum,
                poll_errors=dict(self._poll_errors),
                reload_successful=self._reload_ok,
                reload_success_timestamp=self._reload_ts,
                deferrals=dict(self._deferrals),
                round_duration=self._round,
            )
