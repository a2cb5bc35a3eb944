"""Runs the query plan against Prometheus and folds the answers into counts."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from exporter.report.charger import Charger
from exporter.report.periods import Minutes, Month
from exporter.report.plan import (
    DEFAULT_MAX_POINTS,
    METRIC,
    FleetSeries,
    Measure,
    Query,
    fleet_from_series,
    plan_queries,
)
from exporter.report.promapi import PrometheusAPI, PrometheusError, Sample

# The series listing starts this long before the first month: a series whose last
# sample lies just before it is still seen (through the lookback) at its first minutes.
LISTING_MARGIN = 15 * 60

CountKey = tuple[Measure, Month, bool, Charger]


@dataclass
class Counts:
    """What Prometheus answered: minutes per (measure, month, in a window?, charger),
    and the latest (minute, ``machine`` label) of each renamed charger."""

    minutes: dict[CountKey, int] = field(default_factory=lambda: defaultdict(int))
    latest_name: dict[Charger, tuple[float, str]] = field(default_factory=dict)

    def add(self, query: Query, samples: Sequence[Sample]) -> None:
        for charger, name, value in _checked(query, samples):
            if query.measure is Measure.PRESENCE:
                latest = self.latest_name.get(charger, (value, name))
                self.latest_name[charger] = max(latest, (value, name))
            else:
                key = (query.measure, query.month, query.in_window, charger)
                self.minutes[key] += round(value)


def _checked(query: Query, samples: Sequence[Sample]) -> Iterator[tuple[Charger, str, float]]:
    """(charger, machine label, value) of the answer's samples for the query's own
    chargers; an answer the plan cannot explain is an error, not a figure."""
    members = set(query.chargers)
    limit = math.inf if query.measure is Measure.PRESENCE else query.minutes.count
    seen: set[tuple[Charger, str]] = set()
    for sample in samples:
        charger = Charger(sample.labels.get("actor_id", ""), sample.labels.get("machine_id", ""))
        if charger not in members:
            continue  # another pair the regex matchers also matched: its own query counts it
        name = sample.labels.get("machine") or charger.machine_id
        identity = (charger, name if query.measure is Measure.PRESENCE else "")
        if identity in seen:
            raise PrometheusError(
                f"{charger} has more series than the listing showed; "
                "did its data change during the report? Run it again"
            )
        seen.add(identity)
        if not (math.isfinite(sample.value) and 0 <= sample.value <= limit):
            raise PrometheusError(f"{charger}: Prometheus answered {sample.value!r} for a count")
        yield charger, name, sample.value


def list_fleet(api: PrometheusAPI, months: Sequence[Month]) -> tuple[list[FleetSeries], int]:
    """Every charger with a sample in the months (one request; fails fast)."""
    label_sets = api.series(METRIC, months[0].start - LISTING_MARGIN, months[-1].end - 1)
    return fleet_from_series(label_sets)


def collect(
    api: PrometheusAPI,
    fleet: list[FleetSeries],
    months: Sequence[Month],
    windows: dict[Charger, tuple[Minutes, ...]],
    *,
    threshold: int,
    max_points: int = DEFAULT_MAX_POINTS,
    concurrency: int = 1,
    planned: Callable[[int], None] = lambda _total: None,
    done: Callable[[], None] = lambda: None,
) -> Counts:
    """Run every planned query (``concurrency`` at a time); the first failure
    cancels the rest and is raised as PrometheusError."""
    queries = plan_queries(fleet, months, windows, max_points)
    planned(len(queries))
    counts = Counts()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="query") as pool:
        pending: dict[Future[list[Sample]], Query] = {
            pool.submit(api.vector, query.promql(threshold), query.at): query for query in queries
        }
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    counts.add(pending.pop(future), future.result())
                    done()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    return counts
