"""In-process comparison: our pre-rendered exposition against prometheus_client's
``generate_latest`` over the same snapshot, built from the same simulated fleet
the live run polls (same targets of every kind, same series, same values)."""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import yaml

from bench.procs import FleetShape
from bench.scrape import sample_lines
from exporter.app import Exporter
from exporter.config import Config, parse_config
from exporter.kinds import KINDS
from exporter.logs import SecretScrubber, configure
from exporter.metrics.exposition import GZIP_LEVEL, DataRenderer
from exporter.polling.store import PollOutcome, SnapshotStore
from exporter.simulator import Fleet, FleetSpec
from exporter.simulator.fleet import resolve_window
from exporter.simulator.machines import status_document
from exporter.targets import MACHINE_STATUS, Target, build_targets
from tests.reference import render_reference

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
    serve_plain: Timing  # Exporter.metrics (what the HTTP handler calls), identity
    serve_gzip: Timing  # the same with Accept-Encoding: gzip
    render_cold: Timing  # DataRenderer.render_bodies with an empty block cache
    render_warm: Timing  # same snapshot again: every target's lines cached
    render_changed: Timing  # CHANGED_SHARE of the targets changed since the last render
    gzip_compress: Timing  # gzip of the data body at GZIP_LEVEL
    landing: Timing  # Exporter.landing(): summary, silent machines, first targets
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
    """What a full round of polls against the simulator would hand the store: every
    target of every kind, parsed by its kind from the simulator's own answer."""
    fleet = Fleet(FleetSpec(actors=shape.actors, machines_per_actor=shape.machines_per_actor))
    moment = datetime.fromtimestamp(now, UTC)
    outcomes = []
    for index, target in enumerate(build_targets(config)):
        kind = KINDS[target.kind]
        outcomes.append(
            PollOutcome(
                key=target.key,
                finished_at=now - (index % 600) * 0.05,  # spread over the last 30 s
                reading=kind.parse(_payload(fleet, target, moment), target, config, now),
                status=200,
            )
        )
    return outcomes


def _payload(fleet: Fleet, target: Target, moment: datetime) -> object:
    """The simulator's answer to ``target``'s request at ``moment``."""
    machine = (
        None
        if target.machine_id is None
        else fleet.find_machine(target.actor_id, target.machine_id, None)
    )
    if target.kind == MACHINE_STATUS:
        assert machine is not None  # a status target is a configured machine's
        return status_document(fleet, machine, moment.timestamp(), "utc")
    rolling = target.window.rolling or 86_400.0
    start, end = resolve_window(moment - timedelta(seconds=rolling), moment, None, moment)
    return fleet.dashboard(
        target.actor_id, start=start, end=end, machine=machine, time_period=None, now=moment
    )


def _first_difference(ours: bytes, theirs: bytes) -> tuple[str, str] | None:
    for mine, reference in zip(ours.splitlines(), theirs.splitlines(), strict=False):
        if mine != reference:
            return mine.decode(), reference.decode()
    return None if len(ours) == len(theirs) else ("(length differs)", "(length differs)")


def time_changed_renders(
    store: SnapshotStore, warm: DataRenderer, outcomes: Sequence[PollOutcome], now: float
) -> Timing:
    """Renders by ``warm`` after the next CHANGED_SHARE of the targets, in config order,
    got a new poll result, as between two renders of the daemon (polls land in
    config order, see schedule.phases). Only the render is timed."""
    run_length = max(1, round(len(outcomes) * CHANGED_SHARE))
    rounds = iter(range(1, 1_000_000))
    changed_only: list[float] = []

    def changed_render() -> None:
        offset = next(rounds)
        start = (offset * run_length) % len(outcomes)
        store.apply(
            PollOutcome(key=o.key, finished_at=now + offset * 1e-3, reading=o.reading)
            for o in outcomes[start : start + run_length]
        )
        started = time.perf_counter()
        warm.render_bodies(store.current(), now)
        changed_only.append(time.perf_counter() - started)

    time_runs(changed_render, runs=3, budget=1.0)
    return Timing(
        statistics.median(changed_only), min(changed_only), max(changed_only), len(changed_only)
    )


def compare(config: Config, shape: FleetShape, *, quick: bool) -> RenderResult:
    now = time.time()
    # The daemon's own wiring (not started: no threads, no polling), so the
    # scrape timed below is exactly what the HTTP handler calls.
    scrubber = SecretScrubber()
    exporter = Exporter(lambda: config, configure("error", "json", scrubber), scrubber)
    store = exporter.store
    targets = build_targets(config)
    outcomes = polled_outcomes(config, shape, now)
    store.apply(outcomes)
    snapshot = store.current()
    rendered = exporter.exposition.refresh()
    body = rendered.body

    reference_body = render_reference(snapshot, now)
    reference = time_runs(
        lambda: render_reference(snapshot, now), runs=1 if quick else 3, budget=0.0
    )
    budget = 1.0 if quick else 3.0
    serve_plain = time_runs(lambda: exporter.metrics(None, None), runs=20, budget=budget)
    serve_gzip = time_runs(lambda: exporter.metrics(None, "gzip"), runs=20, budget=budget)

    cold_runs = 1 if quick else 3
    render_cold = time_runs(
        lambda: DataRenderer().render_bodies(snapshot, now), runs=cold_runs, budget=0
    )
    warm = DataRenderer()
    warm.render_bodies(snapshot, now)
    render_warm = time_runs(lambda: warm.render_bodies(snapshot, now), runs=3, budget=1.0)

    render_changed = time_changed_renders(store, warm, outcomes, now)
    gzip_compress = time_runs(
        lambda: gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), runs=3, budget=1.0
    )
    landing = time_runs(exporter.landing, runs=3, budget=budget / 2)
    return RenderResult(
        targets=len(targets),
        series=sample_lines(body),
        reference_series=sample_lines(reference_body),
        identical=body == reference_body,
        first_difference=_first_difference(body, reference_body),
        body_bytes=len(body),
        gzip_bytes=len(rendered.gzipped),
        reference=reference,
        serve_plain=serve_plain,
        serve_gzip=serve_gzip,
        render_cold=render_cold,
        render_warm=render_warm,
        render_changed=render_changed,
        gzip_compress=gzip_compress,
        landing=landing,
        ratio_plain=reference.median / serve_plain.median,
        ratio_gzip=reference.median / serve_gzip.median,
    )
