"""One live run: simulator + exporter processes at one fleet size and variant.

The headline variant is the default config: machine status on for every
configured machine, at its own default interval (5 m). The other turns it off.
Rounds are read from the simulator's request log (``bench/rounds.py``); CPU
comes from ``/proc/PID/stat`` and peak memory from ``VmHWM``.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.floor import FloorServer
from bench.procs import (
    ExporterProcess,
    FleetShape,
    SimulatorProcess,
    exporter_config,
    machine_busy_seconds,
    status_kib,
)
from bench.rounds import (
    FirstRound,
    RequestKey,
    RoundResult,
    dashboard_keys,
    measure_first_round,
    measure_round,
    status_keys,
)
from bench.scrape import LatencyStats, Scraper, scrape_for, sleep_until
from exporter.config import MachineStatusConfig

# machine_status.interval when the config leaves it out (the headline variant).
STATUS_INTERVAL = MachineStatusConfig().interval
Log = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    latency: float = 0.05  # simulated seconds per answer
    concurrency: int = 32
    rate_limit: float = 0.0  # requests/s; 0 = unlimited
    rounds: int = 3  # steady poll rounds measured per size
    scrape_seconds: float = 30.0  # /metrics is scraped every second this long
    paced_interval: float = 60.0  # the second scrape phase: every target once a minute
    quick: bool = False


@dataclass(frozen=True)
class SizeSpec:
    name: str
    shape: FleetShape
    status: bool = True  # machine status as the default config has it


@dataclass(frozen=True)
class SizeResult:
    name: str
    status: bool  # machine status polled (the default config) or turned off
    machines: int
    actors: int
    windows: int
    targets: int  # evDashboard targets: what a steady round polls
    status_targets: int  # machine status targets (0 when off)
    interval_seconds: float  # poll.interval: ideal / 2, at capacity
    status_interval_seconds: float | None  # machine_status.interval (None when off)
    ideal_round_seconds: float  # of the evDashboard targets
    first_round: FirstRound  # process start → every target of every kind once
    rounds: tuple[RoundResult, ...]  # steady evDashboard rounds after a warm-up
    round_seconds: float  # median of the steady rounds
    round_ratio: float  # round_seconds / ideal
    throughput_per_second: float  # requests/s over the steady rounds
    cpu_seconds_per_round: float  # exporter, median
    exporter_cpu_ms_per_request: float  # exporter CPU over the rounds / requests in them
    exporter_cpu_percent: float  # of one core, at capacity, during the rounds
    simulator_cpu_percent: float
    other_cpu_percent: float  # rest of the machine during the rounds (bench included)
    series: int  # sample lines of the plain exposition, polling at capacity
    scrape_plain: LatencyStats  # while polling at capacity
    scrape_gzip: LatencyStats
    scrape_plain_paced: LatencyStats  # after a reload to Settings.paced_interval
    scrape_gzip_paced: LatencyStats
    # The same bytes from a process that only serves them, polling at capacity
    # beside it (bench/floor.py): what no server could beat here.
    floor_plain: LatencyStats
    floor_gzip: LatencyStats
    peak_rss_mib: float  # exporter VmHWM, over the whole run
    peak_rss_before_reload_mib: float  # VmHWM before the reload to the paced interval
    rss_mib: float  # exporter VmRSS at the end
    startup_seconds: float  # process start → /-/ready (every target polled once)


def ideal_round(targets: int, settings: Settings) -> float:
    """max(targets x latency / concurrency, targets / rate limit)."""
    by_concurrency = targets * settings.latency / settings.concurrency
    by_rate = targets / settings.rate_limit if settings.rate_limit > 0 else 0.0
    return max(by_concurrency, by_rate)


@contextlib.contextmanager
def running(
    shape: FleetShape,
    settings: Settings,
    make_config: Callable[[str], dict[str, Any]],
    prefix: str,
) -> Iterator[tuple[SimulatorProcess, ExporterProcess, dict[str, Any]]]:
    """The simulator, then the exporter with ``make_config(simulator url)``; both
    stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        simulator = SimulatorProcess(shape, settings.latency, workdir)
        try:
            config = make_config(simulator.url)
            exporter = ExporterProcess(config, workdir)
            try:
                yield simulator, exporter, config
            finally:
                exporter.stop()
        finally:
            simulator.stop()


def run_size(spec: SizeSpec, settings: Settings, log: Log) -> tuple[SizeResult, dict[str, Any]]:
    """The live measurements at one size and variant; also returns the config."""
    shape, label = spec.shape, f"{spec.name} status {'on' if spec.status else 'off'}"
    ideal = ideal_round(shape.targets, settings)
    # Below the ideal round, so targets are always overdue: the exporter runs flat out.
    interval = max(0.01, ideal / 2)

    def make_config(url: str) -> dict[str, Any]:
        return exporter_config(
            shape,
            url,
            interval=interval,
            stale_after=max(600.0, 20 * ideal),
            concurrency=settings.concurrency,
            rate_limit=settings.rate_limit,
            status=spec.status,
        )

    with running(shape, settings, make_config, f"bench-{spec.name}-") as processes:
        simulator, exporter, config = processes
        keys = dashboard_keys(config)
        every_kind = keys | status_keys(config)
        first_ideal = ideal_round(len(every_kind), settings)
        first = measure_first_round(
            simulator, exporter, every_kind, first_ideal, timeout=max(120.0, 10 * first_ideal)
        )

        def note(message: str) -> None:
            log(f"  {label}: {message}")

        note(
            f"first request after {first.first_request_seconds:.1f}s, every target of every "
            f"kind after {first.seconds:.1f}s ({first.ratio:.2f} x ideal); warm-up round"
        )
        rounds = steady_rounds(simulator, exporter, keys, ideal=ideal, settings=settings, log=note)
        scrapes = scrape_phases(simulator, exporter, config, settings, note)
        peak = status_kib(exporter.pid, "VmHWM") / 1024
        rss = status_kib(exporter.pid, "VmRSS") / 1024
    result = size_result(
        spec,
        settings,
        interval=interval,
        first=first,
        rounds=rounds,
        scrapes=scrapes,
        memory=(peak, rss),
    )
    return result, config


def steady_rounds(
    simulator: SimulatorProcess,
    exporter: ExporterProcess,
    keys: set[RequestKey],
    *,
    ideal: float,
    settings: Settings,
    log: Log,
) -> tuple[RoundResult, ...]:
    """A warm-up round (not reported), then ``settings.rounds`` measured ones."""
    measure_round(simulator, exporter, keys, ideal)
    rounds = []
    for index in range(settings.rounds):
        result = measure_round(simulator, exporter, keys, ideal)
        log(
            f"round {index + 1}: {result.seconds:.2f}s (ideal {ideal:.2f}s), "
            f"exporter CPU {result.exporter_cpu_seconds:.2f}s"
        )
        rounds.append(result)
    return tuple(rounds)


@dataclass(frozen=True)
class ScrapePhases:
    plain: LatencyStats  # polling at capacity
    gzip: LatencyStats
    floor_plain: LatencyStats  # bench/floor.py, still polling at capacity
    floor_gzip: LatencyStats
    peak_rss_before_reload_mib: float
    plain_paced: LatencyStats  # after the reload to the paced interval
    gzip_paced: LatencyStats


def scrape_phases(
    simulator: SimulatorProcess,
    exporter: ExporterProcess,
    config: Mapping[str, Any],
    settings: Settings,
    log: Log,
) -> ScrapePhases:
    """Plain and gzip scrapes while polling at capacity, then of the same bytes from
    bench/floor.py (still polling at capacity), then at the paced interval."""
    simulator.clear_requests()
    log(f"scraping /metrics for {settings.scrape_seconds:.0f}s")
    plain, gzipped = scrape_for(exporter.port, settings.scrape_seconds)
    log(f"the same bytes from bench/floor.py for {settings.scrape_seconds:.0f}s")
    floor_plain, floor_gzip = scrape_floor(exporter, settings.scrape_seconds)
    peak_before_reload = status_kib(exporter.pid, "VmHWM") / 1024
    poll = {**config["poll"], "interval": f"{settings.paced_interval:g}s"}
    exporter.reload({**config, "poll": poll})
    # The reload's own work (its collections, the first render) is not steady state.
    time.sleep(5.0)
    simulator.clear_requests()
    log(f"interval {settings.paced_interval:g}s, scraping again")
    plain_paced, gzip_paced = scrape_for(exporter.port, settings.scrape_seconds)
    simulator.clear_requests()
    return ScrapePhases(
        plain, gzipped, floor_plain, floor_gzip, peak_before_reload, plain_paced, gzip_paced
    )


def scrape_floor(exporter: ExporterProcess, seconds: float) -> tuple[LatencyStats, LatencyStats]:
    """The exporter's current bodies, plain and gzip, scraped from bench/floor.py."""
    workdir = exporter.config_path.parent
    paths = (workdir / "floor-body.txt", workdir / "floor-body.txt.gz")
    for path, encoding in zip(paths, ("identity", "gzip"), strict=True):
        request = urllib.request.Request(  # noqa: S310 (loopback)
            f"{exporter.url}/metrics", headers={"Accept-Encoding": encoding}
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            path.write_bytes(response.read())
    with FloorServer(*paths) as floor:
        return scrape_for(floor.port, seconds)


def size_result(
    spec: SizeSpec,
    settings: Settings,
    *,
    interval: float,
    first: FirstRound,
    rounds: Sequence[RoundResult],
    scrapes: ScrapePhases,
    memory: tuple[float, float],
) -> SizeResult:
    shape = spec.shape
    ideal = ideal_round(shape.targets, settings)
    span = sum(r.seconds for r in rounds)
    round_seconds = statistics.median(r.seconds for r in rounds)
    exporter_cpu = sum(r.exporter_cpu_seconds for r in rounds)
    peak, rss = memory
    return SizeResult(
        name=spec.name,
        status=spec.status,
        machines=shape.machines,
        actors=shape.actors,
        windows=shape.windows,
        targets=shape.targets,
        status_targets=shape.machines if spec.status else 0,
        interval_seconds=interval,
        status_interval_seconds=STATUS_INTERVAL if spec.status else None,
        ideal_round_seconds=ideal,
        first_round=first,
        rounds=tuple(rounds),
        round_seconds=round_seconds,
        round_ratio=round_seconds / ideal,
        throughput_per_second=sum(r.requests for r in rounds) / span,
        cpu_seconds_per_round=statistics.median(r.exporter_cpu_seconds for r in rounds),
        exporter_cpu_ms_per_request=1000 * exporter_cpu / sum(r.requests for r in rounds),
        exporter_cpu_percent=100 * exporter_cpu / span,
        simulator_cpu_percent=100 * sum(r.simulator_cpu_seconds for r in rounds) / span,
        other_cpu_percent=100 * sum(r.other_cpu_seconds for r in rounds) / span,
        series=scrapes.plain.series,
        scrape_plain=scrapes.plain,
        scrape_gzip=scrapes.gzip,
        scrape_plain_paced=scrapes.plain_paced,
        scrape_gzip_paced=scrapes.gzip_paced,
        floor_plain=scrapes.floor_plain,
        floor_gzip=scrapes.floor_gzip,
        peak_rss_mib=peak,
        peak_rss_before_reload_mib=scrapes.peak_rss_before_reload_mib,
        rss_mib=rss,
        startup_seconds=first.ready_seconds,
    )


@dataclass(frozen=True)
class IdleResult:
    """Average CPU at a realistic pace: every target once per interval."""

    status: bool  # machine status polled (the default config) or turned off
    machines: int
    targets: int  # evDashboard targets
    status_targets: int  # machine status targets (0 when off)
    interval_seconds: float
    status_interval_seconds: float | None  # machine_status.interval (None when off)
    measured_seconds: float
    scrape_every_seconds: float
    cpu_percent: float  # of one core, exporter process, average over the span
    simulator_cpu_percent: float
    other_cpu_percent: float  # rest of the machine meanwhile (bench included)
    requests: int  # arrivals at the simulator during the span
    exporter_cpu_ms_per_request: float
    peak_rss_mib: float


@dataclass(frozen=True)
class IdleSpec:
    shape: FleetShape
    status: bool
    interval: float  # poll.interval
    seconds: float  # the measured span
    scrape_every: float


def idle_seconds(status: bool, quick: bool, override: float | None) -> float:
    """The average-CPU span: with status on, one whole machine_status.interval, so
    every kind is polled in its share (each target once per its interval); else
    120 s. ``--quick``: 30 s, which over-weights status (its first round is spread
    over one poll.interval)."""
    if override is not None:
        return override
    if quick:
        return 30.0
    return STATUS_INTERVAL if status else 120.0


def run_idle(spec: IdleSpec, settings: Settings, log: Log) -> IdleResult:
    """CPU of the exporter polling ``spec.shape`` every ``spec.interval`` while
    Prometheus scrapes it every ``spec.scrape_every`` seconds (gzip, as
    Prometheus asks)."""

    def make_config(url: str) -> dict[str, Any]:
        return exporter_config(
            spec.shape,
            url,
            interval=spec.interval,
            stale_after=3 * spec.interval,
            concurrency=settings.concurrency,
            rate_limit=settings.rate_limit,
            status=spec.status,
        )

    with running(spec.shape, settings, make_config, "bench-idle-") as processes:
        simulator, exporter, _ = processes
        exporter.wait_status("/-/healthy", 60)
        time.sleep(5.0)  # start-up (imports, config) is not steady state
        log(f"  idle, status {'on' if spec.status else 'off'}: CPU over {spec.seconds:.0f}s")
        simulator.clear_requests()
        scraper = Scraper(exporter.port, gzip=True)
        start_cpu, sim_cpu = exporter.cpu_seconds(), simulator.cpu_seconds()
        machine_cpu = machine_busy_seconds()
        started = time.monotonic()
        tick = 0
        while (due := started + tick * spec.scrape_every) < started + spec.seconds:
            sleep_until(due)
            scraper.scrape()
            tick += 1
        sleep_until(started + spec.seconds)
        elapsed = time.monotonic() - started
        cpu = exporter.cpu_seconds() - start_cpu
        sim = simulator.cpu_seconds() - sim_cpu
        other = machine_busy_seconds() - machine_cpu - cpu - sim
        scraper.close()
        requests = len(simulator.requests())
        exporter.check_alive()
        peak = status_kib(exporter.pid, "VmHWM") / 1024
    return IdleResult(
        status=spec.status,
        machines=spec.shape.machines,
        targets=spec.shape.targets,
        status_targets=spec.shape.machines if spec.status else 0,
        interval_seconds=spec.interval,
        status_interval_seconds=STATUS_INTERVAL if spec.status else None,
        measured_seconds=elapsed,
        scrape_every_seconds=spec.scrape_every,
        cpu_percent=100 * cpu / elapsed,
        simulator_cpu_percent=100 * sim / elapsed,
        other_cpu_percent=100 * max(0.0, other) / elapsed,
        requests=requests,
        exporter_cpu_ms_per_request=1000 * cpu / max(1, requests),
        peak_rss_mib=peak,
    )
