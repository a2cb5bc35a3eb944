"""The exporter's own counters: API requests, request latency, poll errors,
deferred polls, the last round's length, reloads.

client_python's own metric objects, with ``disable_created_metrics()``: a
``*_created`` series per counter would double the self series and change at every
restart for nothing a dashboard or alert reads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import disable_created_metrics

from exporter.lynx.upstream import Dropped

disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide: ours are the only ones

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


class Stats:
    """The self-observation metrics, as client_python's ``Counter``, ``Histogram``
    and ``Gauge``, in two registries the exposition renders on different
    schedules: ``registry`` at every scrape (a few series), ``errors_registry``
    only when :attr:`poll_errors_version` moves (one counter per actor and reason).
    The methods are what the client, poller and daemon call."""

    def __init__(self, started_at: float) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.errors_registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._requests = Counter(
            "nayax_ev_api_requests",
            "HTTP requests sent to the Lynx API, by status code (or timeout/connection).",
            ["code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "nayax_ev_api_request_duration_seconds",
            "Duration of HTTP requests to the Lynx API (each attempt).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._reload_ok = Gauge(
            "nayax_ev_config_last_reload_successful",
            "1 if the last configuration reload succeeded, else 0.",
            registry=self.registry,
        )
        self._reload_ts = Gauge(
            "nayax_ev_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
            registry=self.registry,
        )
        self._deferred = Counter(
            "nayax_ev_polls_deferred",
            "Polls that waited instead of going out (e.g. their token was held after a 429); "
            "not failures.",
            ["reason"],
            registry=self.registry,
        )
        self._poll_errors = Counter(
            "nayax_ev_poll_errors",
            "Polls that failed or returned unusable fields, by actor and reason.",
            ["actor_id", "reason"],
            registry=self.errors_registry,
        )
        self._records_skipped = Counter(
            "nayax_ev_records_skipped",
            "Records of an API listing skipped at the upstream boundary (no usable "
            "MachineID, not an object), by request kind and reason; the rest of the "
            "listing is used.",
            ["kind", "reason"],
            registry=self.errors_registry,
        )
        self._values_dropped = Counter(
            "nayax_ev_values_dropped",
            "Values of an API answer read as absent at the upstream boundary without "
            "failing the poll (a timestamp before 2000 or a day ahead, an unreadable "
            "optional field of a listed machine), by request kind and reason.",
            ["kind", "reason"],
            registry=self.errors_registry,
        )
        self._reload_ok.set(1)
        self._reload_ts.set(started_at)
        for reason in DEFERRAL_REASONS:
            self._deferred.labels(reason)
        self._actors: frozenset[str] = frozenset()
        self._poll_errors_version = 0
        self._rounds: dict[str, float] = {}  # request kind -> seconds of its last round

    def observe_request(self, code: str, seconds: float) -> None:
        self._requests.labels(code).inc()
        self._latency.observe(seconds)

    def count_poll_error(self, actor_id: int, reason: str) -> None:
        with self._lock:
            self._poll_errors.labels(str(actor_id), reason).inc()
            self._poll_errors_version += 1

    def count_dropped(self, kind: str, dropped: Iterable[Dropped]) -> None:
        """Count records skipped and values dropped by one answer's parse."""
        with self._lock:
            for item in dropped:
                counter = self._records_skipped if item.record else self._values_dropped
                counter.labels(kind, item.reason).inc()
            self._poll_errors_version += 1

    def track_actors(self, actor_ids: Iterable[int]) -> None:
        """The configured actors: each has every poll-error counter, from 0, so
        increase()/rate() see its very first error; a removed actor's go away."""
        actors = frozenset(str(a) for a in actor_ids)
        with self._lock:
            if actors == self._actors:
                # Most reloads keep the actors: the rendered counters stay valid
                # (re-rendering them slowed the next scrape: docs/performance.md).
                return
            for actor in sorted(actors - self._actors):
                for reason in POLL_ERROR_REASONS:
                    self._poll_errors.labels(actor, reason)
            for actor in self._actors - actors:
                for reason in POLL_ERROR_REASONS:
                    with contextlib.suppress(KeyError):
                        self._poll_errors.remove(actor, reason)
            self._actors = actors
            self._poll_errors_version += 1

    def count_deferral(self, reason: str) -> None:
        self._deferred.labels(reason).inc()

    def record_round(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._rounds = {**self._rounds, kind: seconds}  # swapped whole for readers

    def forget_rounds(self, keep: Iterable[str]) -> None:
        """Drop the rounds of request kinds no longer polled."""
        with self._lock:
            self._rounds = {k: v for k, v in self._rounds.items() if k in set(keep)}

    @property
    def round_durations(self) -> Mapping[str, float]:
        """Seconds the last full round of each request kind took (absent before one ended)."""
        return self._rounds

    @property
    def poll_errors_version(self) -> int:
        """Changes whenever a poll-error counter does (a cache key for renderings)."""
        return self._poll_errors_version  # one int read: no lock needed

    def record_reload(self, successful: bool, at: float) -> None:
        self._reload_ok.set(1 if successful else 0)
        if successful:
            self._reload_ts.set(at)
