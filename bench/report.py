"""Results: the machine they ran on, the pass/fail verdict per target, JSON and
a markdown table (``bench/results/latest.md``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import prometheus_client

from bench.procs import REPO
from bench.render import RenderResult
from bench.scenario import IdleResult, LatencyStats, Settings, SizeResult
from exporter import __version__

MIB_PER_MB = 1e6 / 2**20  # the targets are in MB (10^6 bytes); /proc counts KiB


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    python: str
    system: str
    prometheus_client: str
    exporter_version: str
    git_commit: str


def machine_info() -> Machine:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "exporter"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += "+uncommitted exporter changes"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return Machine(
        cpu_model=model,
        cores=os.cpu_count() or 0,
        python=platform.python_version(),
        system=f"{platform.system()} {platform.release()}",
        prometheus_client=prometheus_client.__version__
        if hasattr(prometheus_client, "__version__")
        else _dist_version("prometheus_client"),
        exporter_version=__version__,
        git_commit=commit,
    )


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class SizeReport:
    live: SizeResult
    render: RenderResult
    # generate_latest's median render time over our p99 scrape, end to end
    # (HTTP included on our side only: a conservative ratio).
    http_ratio_plain: float
    http_ratio_gzip: float
    http_ratio_plain_paced: float  # the same against the scrapes at a 60 s interval
    http_ratio_gzip_paced: float


@dataclass(frozen=True)
class Verdict:
    target: str
    limit: str
    measured: str
    met: bool | None  # None: the size it needs was not run


def size_report(live: SizeResult, render: RenderResult) -> SizeReport:
    return SizeReport(
        live=live,
        render=render,
        http_ratio_plain=render.reference.median * 1000 / live.scrape_plain.p99_ms,
        http_ratio_gzip=render.reference.median * 1000 / live.scrape_gzip.p99_ms,
        http_ratio_plain_paced=render.reference.median * 1000 / live.scrape_plain_paced.p99_ms,
        http_ratio_gzip_paced=render.reference.median * 1000 / live.scrape_gzip_paced.p99_ms,
    )


def verdicts(sizes: Sequence[SizeReport], idle: IdleResult | None) -> list[Verdict]:
    by_name = {s.live.name: s for s in sizes}
    big = by_name.get("10000")
    out: list[Verdict] = []

    def add(target: str, limit: str, measured: str | None, met: bool) -> None:
        out.append(Verdict(target, limit, measured or "not run", met if measured else None))

    if big is None:
        for target in ("poll round @10k", "/metrics p99 plain @10k", "/metrics p99 gzip @10k"):
            add(target, "", None, False)
    else:
        live, render = big.live, big.render
        add(
            "poll round @10k (1 window, 50 ms, c=32)",
            "≤ 1.15 x ideal",
            f"{live.round_ratio:.2f} x ideal ({live.round_seconds:.1f} s vs "
            f"{live.ideal_round_seconds:.1f} s)",
            live.round_ratio <= 1.15,
        )
        for kind, stats, pace in (
            ("plain", live.scrape_plain, "polling at capacity"),
            ("gzip", live.scrape_gzip, "polling at capacity"),
            ("plain", live.scrape_plain_paced, "60 s interval"),
            ("gzip", live.scrape_gzip_paced, "60 s interval"),
        ):
            add(
                f"/metrics p99 {kind} @10k ({pace})",
                "≤ 20 ms",
                f"{stats.p99_ms:.1f} ms (p50 {stats.p50_ms:.1f} ms)",
                stats.p99_ms <= 20.0,
            )
        add(
            "/metrics vs generate_latest @10k, end to end (HTTP p99, polling at capacity)",
            "≥ 20 x faster",
            f"plain {_times(big.http_ratio_plain)}x, gzip {_times(big.http_ratio_gzip)}x",
            min(big.http_ratio_plain, big.http_ratio_gzip) >= 20,
        )
        add(
            "/metrics vs generate_latest @10k, end to end (HTTP p99, 60 s interval)",
            "≥ 20 x faster",
            f"plain {_times(big.http_ratio_plain_paced)}x, "
            f"gzip {_times(big.http_ratio_gzip_paced)}x",
            min(big.http_ratio_plain_paced, big.http_ratio_gzip_paced) >= 20,
        )
        add(
            "/metrics vs generate_latest @10k, in process (serve median)",
            "≥ 20 x faster",
            f"plain {_times(render.ratio_plain)}x, gzip {_times(render.ratio_gzip)}x",
            min(render.ratio_plain, render.ratio_gzip) >= 20,
        )
        add(
            "peak RSS @10k",
            "≤ 120 MB",
            f"{live.peak_rss_mib / MIB_PER_MB:.0f} MB ({live.peak_rss_mib:.0f} MiB)",
            live.peak_rss_mib / MIB_PER_MB <= 120.0,
        )
    if idle is None:
        add("CPU @1k, 60 s interval", "≤ 2 % of one core", None, False)
    else:
        add(
            f"CPU @{idle.machines} machines, {idle.interval_seconds:.0f} s interval",
            "≤ 2 % of one core",
            f"{idle.cpu_percent:.2f} % (over {idle.measured_seconds:.0f} s, "
            f"gzip scrape every {idle.scrape_every_seconds:.0f} s)",
            idle.cpu_percent <= 2.0,
        )
    return out


def write_results(
    directory: Path,
    stamp: str,
    *,
    settings: Settings,
    machine: Machine,
    sizes: Sequence[SizeReport],
    idle: IdleResult | None,
    started_at: str,
    duration: float,
    argv: Sequence[str],
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    checks = verdicts(sizes, idle)
    document: dict[str, Any] = {
        "started_at": started_at,
        "duration_seconds": round(duration, 1),
        "argv": list(argv),
        "machine": asdict(machine),
        "settings": asdict(settings),
        "sizes": [asdict(s) for s in sizes],
        "idle": asdict(idle) if idle is not None else None,
        "targets": [asdict(v) for v in checks],
    }
    json_path = directory / f"results-{stamp}.json"
    json_path.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    markdown = render_markdown(
        settings=settings,
        machine=machine,
        sizes=sizes,
        idle=idle,
        checks=checks,
        started_at=started_at,
        duration=duration,
        json_name=json_path.name,
    )
    md_path = directory / "latest.md"
    md_path.write_text(markdown, encoding="utf-8")
    return json_path, md_path


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _latency(stats: LatencyStats) -> str:
    return f"{stats.p50_ms:.1f} / {stats.p99_ms:.1f} ms"


def _times(ratio: float) -> str:
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"


def _bytes(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def render_markdown(
    *,
    settings: Settings,
    machine: Machine,
    sizes: Sequence[SizeReport],
    idle: IdleResult | None,
    checks: Sequence[Verdict],
    started_at: str,
    duration: float,
    json_name: str,
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {started_at} ({duration / 60:.1f} min{', --quick' if settings.quick else ''}); "
        f"raw data: `{json_name}`.",
        f"Machine: {machine.cpu_model}, {machine.cores} cores, Python {machine.python}, "
        f"{machine.system}; prometheus_client {machine.prometheus_client}; "
        f"exporter {machine.exporter_version} @ {machine.git_commit}.",
        f"Settings: simulated latency {settings.latency * 1000:.0f} ms, concurrency "
        f"{settings.concurrency}, rate limit "
        f"{settings.rate_limit or 'none'}, interval = ideal / 2 (at capacity), "
        f"{settings.rounds} measured round(s) per size, /metrics scraped every second for "
        f"{settings.scrape_seconds:.0f} s (plain and gzip, keep-alive) while polling at capacity, "
        f"then again after a reload to a {settings.paced_interval:g} s interval.",
        "",
        "## Live (simulator and exporter in separate processes)",
        "",
        "| size | targets | ideal round | measured round | x ideal | req/s | exporter CPU s/round "
        "| exporter / simulator / other CPU % | /metrics plain p50 / p99 | gzip p50 / p99 "
        "| at 60 s interval: plain p50 / p99 | gzip p50 / p99 "
        "| exposition plain / gzip | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        live = size.live
        lines.append(
            f"| {live.name} | {live.targets} | {live.ideal_round_seconds:.2f} s "
            f"| {live.round_seconds:.2f} s | {live.round_ratio:.2f} "
            f"| {live.throughput_per_second:.0f} | {live.cpu_seconds_per_round:.2f} "
            f"| {live.exporter_cpu_percent:.0f} / {live.simulator_cpu_percent:.0f} "
            f"/ {live.other_cpu_percent:.0f} "
            f"| {_latency(live.scrape_plain)} | {_latency(live.scrape_gzip)} "
            f"| {_latency(live.scrape_plain_paced)} | {_latency(live.scrape_gzip_paced)} "
            f"| {_bytes(live.scrape_plain.bytes)} / {_bytes(live.scrape_gzip.bytes)} "
            f"| {live.peak_rss_mib:.0f} MiB |"
        )
    lines += [
        "",
        "## In process, same snapshot (bench process, nothing else running)",
        "",
        "| size | series | generate_latest | serve plain | serve gzip | x faster plain / gzip "
        "| x faster end to end (vs HTTP p99 at capacity, at 60 s) "
        "| render cold | render warm | render, 5 % changed (a run) | one-shot gzip of data "
        "| landing page | identical bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in sizes:
        r = size.render
        lines.append(
            f"| {size.live.name} | {r.series} | {_ms(r.reference.median)} ms "
            f"| {_ms(r.serve_plain.median)} ms | {_ms(r.serve_gzip.median)} ms "
            f"| {_times(r.ratio_plain)} / {_times(r.ratio_gzip)} "
            f"| {_times(size.http_ratio_plain)} / {_times(size.http_ratio_gzip)}, "
            f"{_times(size.http_ratio_plain_paced)} / {_times(size.http_ratio_gzip_paced)} "
            f"| {_ms(r.render_cold.median)} ms | {_ms(r.render_warm.median)} ms "
            f"| {_ms(r.render_changed.median)} ms | {_ms(r.gzip_compress.median)} ms "
            f"| {_ms(r.landing.median)} ms | {'yes' if r.identical else 'no'} |"
        )
    if idle is not None:
        lines += [
            "",
            "## Average CPU at a realistic pace",
            "",
            f"{idle.machines} machines ({idle.targets} targets), interval "
            f"{idle.interval_seconds:.0f} s, gzip scrape every {idle.scrape_every_seconds:.0f} s, "
            f"measured over {idle.measured_seconds:.0f} s: exporter **{idle.cpu_percent:.2f} %** "
            f"of one core (simulator {idle.simulator_cpu_percent:.2f} %, rest of the machine "
            f"{idle.other_cpu_percent:.1f} %, "
            f"{idle.requests} requests, peak RSS {idle.peak_rss_mib:.0f} MiB).",
        ]
    lines += ["", "## Targets", "", "| target | limit | measured | met |", "|---|---|---|---|"]
    for check in checks:
        met = "n/a" if check.met is None else ("yes" if check.met else "**no**")
        lines.append(f"| {check.target} | {check.limit} | {check.measured} | {met} |")
    return "\n".join(lines) + "\n"
