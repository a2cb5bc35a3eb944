"""Custom collectors: fresh ``*MetricFamily`` objects from immutable inputs.

``SnapshotCollector`` turns the current snapshot into the data families (it is
the reference the fast pre-rendered exposition is tested against);
``SelfCollector`` publishes the exporter's own counters and build info.
"""

from __future__ import annotations

import itertools
import platform
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.samples import DATA_FAMILIES, family_label_names, state_samples
from exporter.stats import DEFERRAL_REASONS, LATENCY_BUCKETS, POLL_ERROR_REASONS, StatsView
from exporter.store import Snapshot

Clock = Callable[[], float]


def snapshot_families(snapshot: Snapshot, now: float) -> list[Metric]:
    """Pure: the data families for ``snapshot`` at wall time ``now``."""
    families = [
        GaugeMetricFamily(f.name, f.help, labels=list(family_label_names(f))) for f in DATA_FAMILIES
    ]
    for state in snapshot.states.values():
        for sample in state_samples(state, now, snapshot.stale_after):
            family = families[sample.family]
            family.add_metric([v for _, v in sample.labels], sample.value)
    return list(families)


class SnapshotCollector(Collector):
    def __init__(self, current: Callable[[], Snapshot], clock: Clock = time.time) -> None:
        self._current = current
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        return snapshot_families(self._current(), self._clock())


def self_families(
    stats: StatsView,
    *,
    version: str,
    shard: str,
    target_count: int,
) -> Iterator[Metric]:
    """Pure: the exporter's self-observation families, except the poll errors."""
    yield from identity_families(version=version, shard=shard, target_count=target_count)
    yield from request_families(stats)
    yield from reload_families(stats)


def identity_families(*, version: str, shard: str, target_count: int) -> Iterator[Metric]:
    """Pure: what this replica is — build, shard, number of targets."""
    build = GaugeMetricFamily(
        "nayax_ev_build_info",
        "Version of the exporter and of Python it runs on; always 1.",
        labels=["version", "python_version"],
    )
    build.add_metric([version, platform.python_version()], 1.0)
    yield build
    index, count = shard.split("/")
    shard_family = GaugeMetricFamily(
        "nayax_ev_shard_info",
        "This replica's shard (--shard INDEX/COUNT); always 1.",
        labels=["index", "count"],
    )
    shard_family.add_metric([index, count], 1.0)
    yield shard_family
    yield GaugeMetricFamily(
        "nayax_ev_targets",
        "Number of poll targets (actor or machine, per window) this replica polls.",
        value=float(target_count),
    )


def request_families(stats: StatsView) -> Iterator[Metric]:
    """Pure: the requests sent to the Lynx API, by code, and their durations."""
    requests = CounterMetricFamily(
        "nayax_ev_api_requests",
        "HTTP requests sent to the Lynx API, by status code (or timeout/connection).",
        labels=["code"],
    )
    for code in sorted(stats.requests):
        requests.add_metric([code], float(stats.requests[code]))
    yield requests
    cumulative = list(itertools.accumulate(stats.latency_counts))
    bounds = [*(floatToGoString(b) for b in LATENCY_BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]
    yield HistogramMetricFamily(
        "nayax_ev_api_request_duration_seconds",
        "Duration of HTTP requests to the Lynx API (each attempt).",
        buckets=[(bound, float(n)) for bound, n in zip(bounds, cumulative, strict=True)],
        sum_value=stats.latency_sum,
    )


def reload_families(stats: StatsView) -> Iterator[Metric]:
    """Pure: whether the last config reload worked, and when one last did."""
    yield GaugeMetricFamily(
        "nayax_ev_config_last_reload_successful",
        "1 if the last configuration reload succeeded, else 0.",
        value=1.0 if stats.reload_successful else 0.0,
    )
    yield GaugeMetricFamily(
        "nayax_ev_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration (re)load.",
        value=stats.reload_success_timestamp,
    )


def poll_error_families(stats: StatsView, actor_ids: Iterable[int]) -> Iterator[Metric]:
    """Pure: the poll-error counters, one per configured actor and reason.

    Kept apart from :func:`self_families`: with many actors these are most of the
    self series, and they change only when a poll fails, so a scrape can reuse
    their rendering (see ``ExpositionCache``) while the request counters move."""
    errors = CounterMetricFamily(
        "nayax_ev_poll_errors",
        "Polls that failed or returned unusable fields, by actor and reason.",
        labels=["actor_id", "reason"],
    )
    counts = {(str(a), reason): 0 for a in actor_ids for reason in POLL_ERROR_REASONS}
    counts.update(stats.poll_errors)
    for (actor_id, reason), errors_seen in sorted(counts.items()):
        errors.add_metric([actor_id, reason], float(errors_seen))
    yield errors


class SelfCollector(Collector):
    def __init__(
        self,
        stats: Callable[[], StatsView],
        *,
        version: str,
        shard: Callable[[], str],
        target_count: Callable[[], int],
    ) -> None:
        self._stats = stats
        self._version = version
        self._shard = shard
        self._target_count = target_count

    def collect(self) -> Iterable[Metric]:
        return self_families(
            self._stats(),
            version=self._version,
            shard=self._shard(),
            target_count=self._target_count(),
        )


class PollErrorsCollector(Collector):
    def __init__(
        self, stats: Callable[[], StatsView], actor_ids: Callable[[], Iterable[int]]
    ) -> None:
        self._stats = stats
        self._actor_ids = actor_ids

    def collect(self) -> Iterable[Metric]:
        return poll_error_families(self._stats(), self._actor_ids())


def poll_families(stats: StatsView, interval: float) -> Iterator[Metric]:
    """Pure: the poll pipeline's families — deferrals, the interval, the last round."""
    deferred = CounterMetricFamily(
        "nayax_ev_polls_deferred",
        "Polls that waited instead of going out (e.g. their token was held after a 429); "
        "not failures.",
        labels=["reason"],
    )
    counts = dict.fromkeys(DEFERRAL_REASONS, 0)
    counts.update(stats.deferrals)
    for reason, count in sorted(counts.items()):
        deferred.add_metric([reason], float(count))
    yield deferred
    yield GaugeMetricFamily(
        "nayax_ev_poll_interval_seconds",
        "The configured poll.interval: each target is meant to be polled once per interval.",
        value=interval,
    )
    round_family = GaugeMetricFamily(
        "nayax_ev_poll_round_duration_seconds",
        "How long the last full round took (until every target had finished a poll).",
    )
    if stats.round_duration is not None:
        round_family.add_metric([], stats.round_duration)
    yield round_family


class PollCollector(Collector):
    def __init__(self, stats: Callable[[], StatsView], interval: Callable[[], float]) -> None:
        self._stats = stats
        self._interval = interval

    def collect(self) -> Iterable[Metric]:
        return poll_families(self._stats(), self._interval())
