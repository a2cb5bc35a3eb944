"""Custom collectors: fresh ``*MetricFamily`` objects from immutable inputs.

``SelfCollector`` publishes what the replica is (build, shard, targets) and
``PollCollector`` the poll interval and round; the exporter's counters are
client_python metric objects (exporter/stats.py).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.config import Secret

Clock = Callable[[], float]


def identity_families(*, version: str, shard: str, target_count: int) -> Iterator[Metric]:
    """Pure: what this replica is — build, shard, number of targets. (The
    counters and reload gauges are client_python metric objects: exporter/stats.py.)"""
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


class SelfCollector(Collector):
    def __init__(
        self,
        *,
        version: str,
        shard: Callable[[], str],
        target_count: Callable[[], int],
    ) -> None:
        self._version = version
        self._shard = shard
        self._target_count = target_count

    def collect(self) -> Iterable[Metric]:
        return identity_families(
            version=self._version, shard=self._shard(), target_count=self._target_count()
        )


def poll_families(rounds: Mapping[str, float], intervals: Mapping[str, float]) -> Iterator[Metric]:
    """Pure: the poll pipeline's gauges per request kind — its configured
    interval, and how long its last full round took."""
    interval_family = GaugeMetricFamily(
        "nayax_ev_poll_interval_seconds",
        "The configured interval of each request kind: each of its targets is meant "
        "to be polled once per interval (poll.interval for evDashboard).",
        labels=["kind"],
    )
    for kind, seconds in sorted(intervals.items()):
        interval_family.add_metric([kind], seconds)
    yield interval_family
    round_family = GaugeMetricFamily(
        "nayax_ev_poll_round_duration_seconds",
        "How long the last full round of each request kind took (until every one of "
        "its targets had finished a poll).",
        labels=["kind"],
    )
    for kind, seconds in sorted(rounds.items()):  # absent, not 0, until a round has ended
        round_family.add_metric([kind], seconds)
    yield round_family


class PollCollector(Collector):
    def __init__(
        self,
        rounds: Callable[[], Mapping[str, float]],
        intervals: Callable[[], Mapping[str, float]],
    ) -> None:
        self._rounds = rounds
        self._intervals = intervals

    def collect(self) -> Iterable[Metric]:
        return poll_families(self._rounds(), self._intervals())


def budget_families(rate_needed: float, rate_limit: float) -> Iterator[Metric]:
    """Pure: the request budget of the targets polled now (recomputed at every
    reload and whenever discovery changes the machines)."""
    yield GaugeMetricFamily(
        "nayax_ev_request_budget_requests_per_second",
        "Requests per second that polling every target once per its interval needs.",
        value=rate_needed,
    )
    yield GaugeMetricFamily(
        "nayax_ev_request_budget_rate_limit_requests_per_second",
        "lynx.rate_limit_per_second (0: unlimited); above it, rounds take longer than "
        "their interval.",
        value=rate_limit,
    )


class BudgetCollector(Collector):
    def __init__(self, budget: Callable[[], tuple[float, float]]) -> None:
        self._budget = budget  # (rate needed, rate limit)

    def collect(self) -> Iterable[Metric]:
        return budget_families(*self._budget())


def access_token_families(expiries: Mapping[int, float]) -> Iterator[Metric]:
    """Pure: when each actor's access token expires (actors on refresh tokens only;
    nothing at all without one, so a static-token exposition stays as it was)."""
    if not expiries:
        return
    family = GaugeMetricFamily(
        "nayax_ev_access_token_expiry_timestamp_seconds",
        "Unix time the access token exchanged for the actor's refresh token expires; "
        "0 while none could be obtained.",
        labels=["actor_id"],
    )
    for actor_id in sorted(expiries):
        family.add_metric([str(actor_id)], expiries[actor_id])
    yield family


def token_expiries(
    credentials: Mapping[int, Secret], expiry: Callable[[Secret], float | None]
) -> dict[int, float]:
    """Each actor's access-token expiry: ``expiry`` of its credential (a
    RefreshToken; one for which it says None, as for a static token, is left out)."""
    found = {a: expiry(c) for a, c in credentials.items()}
    return {a: e for a, e in found.items() if e is not None}


class AccessTokenCollector(Collector):
    def __init__(self, expiries: Callable[[], Mapping[int, float]]) -> None:
        self._expiries = expiries

    def collect(self) -> Iterable[Metric]:
        return access_token_families(self._expiries())
