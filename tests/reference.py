"""prometheus_client's own rendering of a snapshot: the reference the exporter's
pre-rendered exposition is tested (and benchmarked) against. Test code only."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_format
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.metrics.families import DATA_FAMILIES, FAMILY_INDEX, state_samples
from exporter.polling.store import Snapshot


def snapshot_families(snapshot: Snapshot, now: float) -> list[Metric]:
    """The data families for ``snapshot`` at wall time ``now``, as fresh
    ``GaugeMetricFamily`` objects."""
    families: list[Metric] = [
        GaugeMetricFamily(f.name, f.help, labels=list(f.labels)) for f in DATA_FAMILIES
    ]
    for state in snapshot.states.values():
        for sample in state_samples(state, now, snapshot.stale_after):
            family = families[FAMILY_INDEX[sample.family]]
            assert isinstance(family, GaugeMetricFamily)
            family.add_metric([v for _, v in sample.labels], sample.value)
    return families


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot, now: float) -> None:
        self._snapshot = snapshot
        self._now = now

    def collect(self) -> Iterable[Metric]:
        return snapshot_families(self._snapshot, self._now)


def render_reference(snapshot: Snapshot, now: float) -> bytes:
    """prometheus_client's ``generate_latest`` of the same series."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, now))
    return text_format.generate_latest(registry)
