"""In-process comparison: our pre-rendered exposition against prometheus_client's
``generate_latest`` over the same snapshot, built from the same simulated fleet
the live run polls (same targets, same series, same values)."""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from bench.procs import FleetShape
from exporter import __version__
from exporter.collector import SelfCollector
from exporter.config import Config, parse_config
from exporter.exposition import GZIP_LEVEL, DataRenderer, ExpositionCache, render_reference
from exporter.reading import parse_payload
from exporter.simulator import Fleet, FleetSpec
from exporter.simulator.fleet import resolve_window
from exporter.stats import Stats
from exporter.store import PollOutcome, SnapshotStore
from exporter.targets import Target, build_targets

CHANGED_SHARE = 0.05  # share of targets whose state changes between two renders


@dataclass(frozen=True)
class Timing:
    """Median and spread of repeated runs of one operation, in seconds."""

    median: float
    minimum: float
    maximum: float
    runs: int


@dataclass(frozen=True)
class RenderResult:
    targets: int
    series: int  # sample lines in our data exposition
    reference_series: int  # sample lines in generate_latest's
    identical: bool  # our data bytes == generate_latest's bytes
    first_difference: tuple[str, str] | None  # (ours, theirs): the first differing line
    body_bytes: int
    gzip_bytes: int
    reference: Timing  # generate_latest over the snapshot
    serve_plain: Timing  # ExpositionCache.serve, identity
    serve_gzip: Timing  # ExpositionCache.serve, Accept-Encoding: gzip
    render_cold: Timing  # DataRenderer.render with an empty line cache
    render_warm: Timing  # same snapshot again: every target's lines cached
    render_changed: Timing  # CHANGED_SHARE of the targets changed since the last render
    gzip_compress: Timing  # gzip of the data body at GZIP_LEVEL
    ratio_plain: float  # reference / serve_plain (how many times faster we serve)
    ratio_gzip: float


def time_runs(action: Callable[[], object], *, runs: int, budget: float) -> Timing:
    """Run ``action`` at least ``runs`` times (more while within ``budget`` seconds)."""
    durations: list[float] = []
    deadline = time.perf_counter() + budget
    while len(durations) < runs or (time.perf_counter() < deadline and len(durations) < 1000):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return Timing(statistics.median(durations), min(durations), max(durations), len(durations))


def fleet_config(document: dict[str, object]) -> Config:
    return parse_config(yaml.safe_dump(document, sort_keys=False), environ={})


def polled_outcomes(config: Config, shape: FleetShape, now: float) -> list[PollOutcome]:
    """What a full round of polls against the simulator would hand the store."""
    fleet = Fleet(FleetSpec(actors=shape.actors, machines_per_actor=shape.machines_per_actor))
    moment = datetime.fromtimestamp(now, UTC)
    outcomes = []
    for index, target in enumerate(build_targets(config)):
        outcomes.append(
            PollOutcome(
                key=target.key,
                finished_at=now - (index % 600) * 0.05,  # spread over the last 30 s
                reading=parse_payload(
                    _payload(fleet, target, moment),
                    duration_unit=config.units.duration,
                    energy_unit=config.units.energy,
                    want_operator=target.operator_status,
                ),
                status=200,
            )
        )
    return outcomes


def _payload(fleet: Fleet, target: Target, moment: datetime) -> dict[str, object]:
    rolling = target.window.rolling or 86_400.0
    start, end = resolve_window(moment - timedelta(seconds=rolling), moment, None, moment)
    machine = (
        None
        if target.machine_id is None
        else fleet.find_machine(target.actor_id, target.machine_id, None)
    )
    return fleet.dashboard(
        target.actor_id, start=start, end=end, machine=machine, time_period=None, now=moment
    )


def _first_difference(ours: bytes, theirs: bytes) -> tuple[str, str] | None:
    for mine, reference in zip(ours.splitlines(), theirs.splitlines(), strict=False):
        if mine != reference:
            return mine.decode(), reference.decode()
    return None if len(ours) == len(theirs) else ("(length differs)", "(length differs)")


def _sample_lines(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def self_registry(target_count: int, actor_ids: Sequence[int]) -> CollectorRegistry:
    """The exporter's self-observation registry, as the daemon builds it (its
    poll-error family carries a zero series per actor and reason)."""
    stats = Stats(started_at=time.time())
    for code, seconds in (("200", 0.05), ("200", 0.07), ("429", 0.01), ("timeout", 10.0)):
        stats.observe_request(code, seconds)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        SelfCollector(
            stats.view,
            version=__version__,
            shard=lambda: "0/1",
            target_count=lambda: target_count,
            actor_ids=lambda: sorted(set(actor_ids)),
        )
    )
    ProcessCollector(registry=registry)
    return registry


def compare(config: Config, shape: FleetShape, *, quick: bool) -> RenderResult:
    now = time.time()
    targets = build_targets(config)
    store = SnapshotStore(targets, config.poll.stale_after)
    outcomes = polled_outcomes(config, shape, now)
    store.apply(outcomes)
    snapshot = store.current()
    registry = self_registry(len(targets), [t.actor_id for t in targets])

    reference_body = render_reference(snapshot, now)
    reference = time_runs(
        lambda: render_reference(snapshot, now), runs=1 if quick else 3, budget=0.0
    )

    cache = ExpositionCache(store, registry)
    body = cache.rendered.body
    serve_plain = time_runs(lambda: cache.serve(None, None), runs=20, budget=1.0 if quick else 3.0)
    serve_gzip = time_runs(lambda: cache.serve(None, "gzip"), runs=20, budget=1.0 if quick else 3.0)

    cold_runs = 1 if quick else 3
    render_cold = time_runs(lambda: DataRenderer().render(snapshot, now), runs=cold_runs, budget=0)
    warm = DataRenderer()
    warm.render(snapshot, now)
    render_warm = time_runs(lambda: warm.render(snapshot, now), runs=3, budget=1.0)

    # Each run: a fresh share of targets got a new poll result since the last render.
    step = max(1, round(1 / CHANGED_SHARE))
    rounds = iter(range(1, 1_000_000))

    def changed_render() -> None:
        offset = next(rounds)
        store.apply(
            PollOutcome(key=o.key, finished_at=now + offset * 1e-3, reading=o.reading)
            for o in outcomes[offset % step :: step]
        )
        started = time.perf_counter()
        warm.render(store.current(), now)
        changed_only.append(time.perf_counter() - started)

    changed_only: list[float] = []
    time_runs(changed_render, runs=3, budget=1.0)
    render_changed = Timing(
        statistics.median(changed_only), min(changed_only), max(changed_only), len(changed_only)
    )
    gzip_compress = time_runs(
        lambda: gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), runs=3, budget=1.0
    )
    return RenderResult(
        targets=len(targets),
        series=_sample_lines(body),
        reference_series=_sample_lines(reference_body),
        identical=body == reference_body,
        first_difference=_first_difference(body, reference_body),
        body_bytes=len(body),
        gzip_bytes=len(cache.rendered.gzipped),
        reference=reference,
        serve_plain=serve_plain,
        serve_gzip=serve_gzip,
        render_cold=render_cold,
        render_warm=render_warm,
        render_changed=render_changed,
        gzip_compress=gzip_compress,
        ratio_plain=reference.median / serve_plain.median,
        ratio_gzip=reference.median / serve_gzip.median,
    )
