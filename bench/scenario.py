"""One live run: simulator + exporter processes at one fleet size.

Poll rounds are measured from the simulator's request log: after clearing it,
a round ends when every target has arrived once. CPU comes from
``/proc/PID/stat`` and peak memory from ``VmHWM``; the monotonic clock the
simulator stamps arrivals with is the same system-wide one the bench reads.
"""

from __future__ import annotations

import http.client
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.procs import (
    WINDOWS,
    ExporterProcess,
    FleetShape,
    SimulatorProcess,
    exporter_config,
    machine_busy_seconds,
    status_kib,
)

RequestKey = tuple[int | None, str | None, int]  # (actor id, machine, window span s)


@dataclass(frozen=True)
class Settings:
    latency: float = 0.05  # simulated seconds per answer
    concurrency: int = 32
    rate_limit: float = 0.0  # requests/s; 0 = unlimited
    rounds: int = 3  # poll rounds measured per size
    scrape_seconds: float = 30.0  # /metrics is scraped every second this long
    paced_interval: float = 60.0  # the second scrape phase: every target once a minute
    quick: bool = False


@dataclass(frozen=True)
class LatencyStats:
    """Scrape latency (request sent → last body byte read), milliseconds."""

    count: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    bytes: int


@dataclass(frozen=True)
class RoundResult:
    seconds: float  # clear → every target arrived once
    requests: int  # arrivals during that span
    non_200: int
    exporter_cpu_seconds: float  # over the round
    simulator_cpu_seconds: float
    # Everything else busy on the machine meanwhile (the bench itself, other
    # users): a loud neighbour makes the other figures pessimistic.
    other_cpu_seconds: float


@dataclass(frozen=True)
class SizeResult:
    name: str
    machines: int
    actors: int
    windows: int
    targets: int
    interval_seconds: float
    ideal_round_seconds: float
    rounds: tuple[RoundResult, ...]
    round_seconds: float  # median of the rounds
    round_ratio: float  # round_seconds / ideal
    throughput_per_second: float  # requests/s over the measured rounds
    cpu_seconds_per_round: float  # exporter, median
    exporter_cpu_percent: float  # of one core, at capacity, during the rounds
    simulator_cpu_percent: float
    other_cpu_percent: float  # rest of the machine during the rounds (bench included)
    scrape_plain: LatencyStats  # while polling at capacity
    scrape_gzip: LatencyStats
    scrape_plain_paced: LatencyStats  # after a reload to Settings.paced_interval
    scrape_gzip_paced: LatencyStats
    peak_rss_mib: float  # exporter VmHWM
    rss_mib: float  # exporter VmRSS at the end
    startup_seconds: float  # process start → /-/ready (every target polled once)


def ideal_round(targets: int, settings: Settings) -> float:
    """max(targets x latency / concurrency, targets / rate limit)."""
    by_concurrency = targets * settings.latency / settings.concurrency
    by_rate = targets / settings.rate_limit if settings.rate_limit > 0 else 0.0
    return max(by_concurrency, by_rate)


def _span(query: Mapping[str, str]) -> int:
    try:
        start = datetime.fromisoformat(query["StartDate"])
        end = datetime.fromisoformat(query["EndDate"])
    except (KeyError, ValueError):
        return -1
    return round((end - start).total_seconds())


def request_key(record: Mapping[str, Any]) -> RequestKey:
    return (record.get("actor_id"), record.get("machine"), _span(record.get("query") or {}))


def expected_keys(config: Mapping[str, Any]) -> set[RequestKey]:
    spans = [seconds for _, seconds in WINDOWS][: len(config["windows"])]
    keys: set[RequestKey] = set()
    for actor in config["actors"]:
        for span in spans:
            keys.add((actor["id"], None, span))
            keys.update((actor["id"], str(m["id"]), span) for m in actor["machines"])
    return keys


def measure_round(
    simulator: SimulatorProcess,
    exporter: ExporterProcess,
    keys: set[RequestKey],
    ideal: float,
) -> RoundResult:
    started = time.monotonic()
    exporter_cpu, simulator_cpu = exporter.cpu_seconds(), simulator.cpu_seconds()
    machine_cpu = machine_busy_seconds()
    simulator.clear_requests()
    # Fetching the log costs the simulator CPU: look first when a round should
    # be nearly over, then in small steps.
    time.sleep(max(0.5, 1.1 * ideal))
    deadline = started + max(30.0, 6 * ideal)
    while True:
        exporter.check_alive()
        now = time.monotonic()
        records = simulator.requests()
        first: dict[RequestKey, float] = {}
        for record in records:
            key = request_key(record)
            if key in keys and key not in first:
                first[key] = float(record["monotonic"])
        if len(first) == len(keys):
            end = max(first.values())
            elapsed = now - started
            within = [r for r in records if float(r["monotonic"]) <= end]
            # CPU over the span up to this fetch, scaled to the round.
            scale = (end - started) / elapsed
            exporter_used = exporter.cpu_seconds() - exporter_cpu
            simulator_used = simulator.cpu_seconds() - simulator_cpu
            machine_used = machine_busy_seconds() - machine_cpu
            return RoundResult(
                seconds=end - started,
                requests=len(within),
                non_200=sum(1 for r in within if r["status"] not in (0, 200)),
                exporter_cpu_seconds=exporter_used * scale,
                simulator_cpu_seconds=simulator_used * scale,
                other_cpu_seconds=max(0.0, machine_used - exporter_used - simulator_used) * scale,
            )
        if now > deadline:
            missing = len(keys) - len(first)
            raise TimeoutError(
                f"{missing} of {len(keys)} targets not polled within {now - started:.0f}s"
            )
        time.sleep(max(0.25, 0.1 * ideal))


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (with 30 samples, p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Scraper:
    """One keep-alive connection, as Prometheus keeps one per target."""

    def __init__(self, port: int, gzip: bool) -> None:
        self._port = port
        self._headers = {"Accept-Encoding": "gzip"} if gzip else {}
        self._connection: http.client.HTTPConnection | None = None
        self.durations: list[float] = []
        self.errors = 0
        self.size = 0

    def scrape(self) -> None:
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        started = time.perf_counter()
        try:
            self._connection.request("GET", "/metrics", headers=self._headers)
            response = self._connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.errors += 1
            self._connection.close()
            self._connection = None
            return
        self.durations.append(time.perf_counter() - started)
        if response.status != 200:
            self.errors += 1
        self.size = len(body)

    def stats(self) -> LatencyStats:
        ms = [d * 1000 for d in self.durations] or [math.nan]
        return LatencyStats(
            count=len(self.durations),
            errors=self.errors,
            p50_ms=statistics.median(ms),
            p99_ms=percentile(ms, 0.99),
            max_ms=max(ms),
            bytes=self.size,
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def scrape_for(
    port: int, seconds: float, period: float = 1.0, seed: int = 5
) -> tuple[LatencyStats, LatencyStats]:
    """A plain scrape in the first half of every ``period`` and a gzip one in the
    second, each at a random moment within its half (seeded: runs repeat).

    Not on a fixed grid: the exporter renders on a fixed period too (every
    max(1 s, interval/20)), and both grids start from the same reload, so at fixed
    moments every scrape of a run met a render or none did, and the slowest of 30
    measured that phase, not the exporter."""
    rng = random.Random(seed)
    plain, gzipped = Scraper(port, gzip=False), Scraper(port, gzip=True)
    started = time.monotonic()
    half = period / 2
    tick = 0
    try:
        while (due := started + tick * period) < started + seconds:
            _sleep_until(due + rng.uniform(0, half * 0.8))
            plain.scrape()
            _sleep_until(due + half + rng.uniform(0, half * 0.8))
            gzipped.scrape()
            tick += 1
    finally:
        plain.close()
        gzipped.close()
    return plain.stats(), gzipped.stats()


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


@dataclass(frozen=True)
class SizeSpec:
    name: str
    shape: FleetShape


def run_size(
    spec: SizeSpec, settings: Settings, log: Callable[[str], None]
) -> tuple[SizeResult, dict[str, Any]]:
    """The live measurements at one size; also returns the generated config."""
    shape = spec.shape
    ideal = ideal_round(shape.targets, settings)
    # Below the ideal round, so targets are always overdue: the exporter runs flat out.
    interval = max(0.01, ideal / 2)
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as tmp:
        workdir = Path(tmp)
        simulator = SimulatorProcess(shape, settings.latency, workdir)
        try:
            config = exporter_config(
                shape,
                simulator.url,
                interval=interval,
                stale_after=max(600.0, 20 * ideal),
                concurrency=settings.concurrency,
                rate_limit=settings.rate_limit,
            )
            started = time.monotonic()
            exporter = ExporterProcess(config, workdir)
            try:
                exporter.wait_status("/-/healthy", 60)
                exporter.wait_status("/-/ready", max(120.0, 10 * ideal))
                startup = time.monotonic() - started
                log(f"  {spec.name}: ready after {startup:.1f}s; warm-up round")
                keys = expected_keys(config)
                measure_round(simulator, exporter, keys, ideal)  # warm-up, not reported
                rounds = []
                for index in range(settings.rounds):
                    result = measure_round(simulator, exporter, keys, ideal)
                    log(
                        f"  {spec.name}: round {index + 1}: {result.seconds:.2f}s "
                        f"(ideal {ideal:.2f}s), exporter CPU {result.exporter_cpu_seconds:.2f}s"
                    )
                    rounds.append(result)
                simulator.clear_requests()
                log(f"  {spec.name}: scraping /metrics for {settings.scrape_seconds:.0f}s")
                plain, gzipped = scrape_for(exporter.port, settings.scrape_seconds)
                poll = {**config["poll"], "interval": f"{settings.paced_interval:g}s"}
                paced = {**config, "poll": poll}
                exporter.reload(paced)
                # The reload's own work (its collections, the first render) is not
                # steady state.
                time.sleep(5.0)
                simulator.clear_requests()
                log(f"  {spec.name}: interval {settings.paced_interval:g}s, scraping again")
                plain_paced, gzip_paced = scrape_for(exporter.port, settings.scrape_seconds)
                simulator.clear_requests()
                peak = status_kib(exporter.pid, "VmHWM") / 1024
                rss = status_kib(exporter.pid, "VmRSS") / 1024
            finally:
                exporter.stop()
        finally:
            simulator.stop()
    span = sum(r.seconds for r in rounds)
    round_seconds = statistics.median(r.seconds for r in rounds)
    size_result = SizeResult(
        name=spec.name,
        machines=shape.machines,
        actors=shape.actors,
        windows=shape.windows,
        targets=shape.targets,
        interval_seconds=interval,
        ideal_round_seconds=ideal,
        rounds=tuple(rounds),
        round_seconds=round_seconds,
        round_ratio=round_seconds / ideal,
        throughput_per_second=sum(r.requests for r in rounds) / span,
        cpu_seconds_per_round=statistics.median(r.exporter_cpu_seconds for r in rounds),
        exporter_cpu_percent=100 * sum(r.exporter_cpu_seconds for r in rounds) / span,
        simulator_cpu_percent=100 * sum(r.simulator_cpu_seconds for r in rounds) / span,
        other_cpu_percent=100 * sum(r.other_cpu_seconds for r in rounds) / span,
        scrape_plain=plain,
        scrape_gzip=gzipped,
        scrape_plain_paced=plain_paced,
        scrape_gzip_paced=gzip_paced,
        peak_rss_mib=peak,
        rss_mib=rss,
        startup_seconds=startup,
    )
    return size_result, config


@dataclass(frozen=True)
class IdleResult:
    """Average CPU at a realistic pace: every target once per interval."""

    machines: int
    targets: int
    interval_seconds: float
    measured_seconds: float
    scrape_every_seconds: float
    cpu_percent: float  # of one core, exporter process, average over the span
    simulator_cpu_percent: float
    other_cpu_percent: float  # rest of the machine meanwhile (bench included)
    requests: int  # arrivals at the simulator during the span
    peak_rss_mib: float


def run_idle(
    shape: FleetShape,
    settings: Settings,
    *,
    interval: float,
    seconds: float,
    scrape_every: float,
    log: Callable[[str], None],
) -> IdleResult:
    """CPU of the exporter polling ``shape`` every ``interval`` while Prometheus
    scrapes it every ``scrape_every`` seconds (gzip, as Prometheus asks)."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        workdir = Path(tmp)
        simulator = SimulatorProcess(shape, settings.latency, workdir)
        try:
            config = exporter_config(
                shape,
                simulator.url,
                interval=interval,
                stale_after=3 * interval,
                concurrency=settings.concurrency,
                rate_limit=settings.rate_limit,
            )
            exporter = ExporterProcess(config, workdir)
            try:
                exporter.wait_status("/-/healthy", 60)
                time.sleep(5.0)  # start-up (imports, config) is not steady state
                log(f"  idle: measuring CPU over {seconds:.0f}s")
                simulator.clear_requests()
                scraper = Scraper(exporter.port, gzip=True)
                start_cpu, sim_cpu = exporter.cpu_seconds(), simulator.cpu_seconds()
                machine_cpu = machine_busy_seconds()
                started = time.monotonic()
                tick = 0
                while (due := started + tick * scrape_every) < started + seconds:
                    _sleep_until(due)
                    scraper.scrape()
                    tick += 1
                _sleep_until(started + seconds)
                elapsed = time.monotonic() - started
                cpu = exporter.cpu_seconds() - start_cpu
                sim = simulator.cpu_seconds() - sim_cpu
                other = machine_busy_seconds() - machine_cpu - cpu - sim
                scraper.close()
                requests = len(simulator.requests())
                exporter.check_alive()
                peak = status_kib(exporter.pid, "VmHWM") / 1024
            finally:
                exporter.stop()
        finally:
            simulator.stop()
    return IdleResult(
        machines=shape.machines,
        targets=shape.targets,
        interval_seconds=interval,
        measured_seconds=elapsed,
        scrape_every_seconds=scrape_every,
        cpu_percent=100 * cpu / elapsed,
        simulator_cpu_percent=100 * sim / elapsed,
        other_cpu_percent=100 * max(0.0, other) / elapsed,
        requests=requests,
        peak_rss_mib=peak,
    )
