"""``bench/results/latest.md``: the results as markdown tables."""

from __future__ import annotations

from collections.abc import Sequence

from bench.machine import Machine
from bench.scenario import IdleResult, Settings
from bench.scrape import LatencyStats
from bench.verdicts import SizeReport, Verdict, times


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _latency(stats: LatencyStats) -> str:
    return f"{stats.p50_ms:.1f} / {stats.p99_ms:.1f} ms"


def _bytes(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def _on_off(status: bool) -> str:
    return "on" if status else "off"


def render_markdown(
    *,
    settings: Settings,
    machine: Machine,
    sizes: Sequence[SizeReport],
    idles: Sequence[IdleResult],
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
        f"{settings.rate_limit or 'none'}, poll.interval = ideal evDashboard round / 2 "
        "(at capacity); status on = the default config (machine status for every machine, "
        "every 5 m), off = `machine_status: {enabled: false}`; "
        f"{settings.rounds} steady round(s) measured per size after a warm-up round, "
        f"/metrics scraped every second for {settings.scrape_seconds:.0f} s (plain and gzip, "
        "keep-alive) while polling at capacity, then again after a reload to a "
        f"{settings.paced_interval:g} s interval.",
        *_rounds_table(sizes),
        *_scrape_table(sizes),
        *_render_table(sizes),
        *_idle_lines(idles),
        "",
        "## Targets",
        "",
        "| issue | target | limit | measured | met |",
        "|---:|---|---|---|---|",
    ]
    for check in checks:
        met = "n/a" if check.met is None else ("yes" if check.met else "**no**")
        lines.append(
            f"| {check.issue} | {check.target} | {check.limit} | {check.measured} | {met} |"
        )
    return "\n".join(lines) + "\n"


def _rounds_table(sizes: Sequence[SizeReport]) -> list[str]:
    lines = [
        "",
        "## Poll rounds and CPU (simulator and exporter in separate processes)",
        "",
        "First round: from process start until every target of every kind has been polled "
        "once (start-up included; its ideal counts every target). Steady round: the "
        "evDashboard targets, after the first round and a warm-up round (status targets "
        "are not due again within 5 m). CPU per request: exporter CPU over the steady rounds "
        "÷ requests the simulator received in them.",
        "",
        "| size | status | targets (evDashboard + status) | first round: first request "
        "/ every target / ideal | x ideal | steady round / ideal | x ideal | req/s "
        "| exporter CPU per request | exporter CPU s/round "
        "| exporter / simulator / other CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        live, first = size.live, size.live.first_round
        lines.append(
            f"| {live.name} | {_on_off(live.status)} | {live.targets} + {live.status_targets} "
            f"| {first.first_request_seconds:.2f} / {first.seconds:.2f} "
            f"/ {first.ideal_seconds:.2f} s | {first.ratio:.2f} "
            f"| {live.round_seconds:.2f} / {live.ideal_round_seconds:.2f} s "
            f"| {live.round_ratio:.2f} | {live.throughput_per_second:.0f} "
            f"| {live.exporter_cpu_ms_per_request:.2f} ms | {live.cpu_seconds_per_round:.2f} "
            f"| {live.exporter_cpu_percent:.0f} / {live.simulator_cpu_percent:.0f} "
            f"/ {live.other_cpu_percent:.0f} |"
        )
    return lines


def _scrape_table(sizes: Sequence[SizeReport]) -> list[str]:
    lines = [
        "",
        "## /metrics and memory",
        "",
        "The floor: the same bytes served by a process that does nothing else "
        "(`bench/floor.py`), scraped the same way while the exporter polls at capacity "
        "beside it. Peak RSS: over the whole run (the reload to a 60 s interval "
        "included), and before that reload.",
        "",
        "| size | status | series (plain exposition) | polling at capacity: plain p50 / p99 "
        "| gzip p50 / p99 | the floor: plain p50 / p99 | gzip p50 / p99 "
        "| at 60 s interval: plain p50 / p99 | gzip p50 / p99 "
        "| exposition plain / gzip | peak RSS (before the reload) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        live = size.live
        lines.append(
            f"| {live.name} | {_on_off(live.status)} | {live.series} "
            f"| {_latency(live.scrape_plain)} | {_latency(live.scrape_gzip)} "
            f"| {_latency(live.floor_plain)} | {_latency(live.floor_gzip)} "
            f"| {_latency(live.scrape_plain_paced)} | {_latency(live.scrape_gzip_paced)} "
            f"| {_bytes(live.scrape_plain.bytes)} / {_bytes(live.scrape_gzip.bytes)} "
            f"| {live.peak_rss_mib:.0f} ({live.peak_rss_before_reload_mib:.0f}) MiB |"
        )
    return lines


def _render_table(sizes: Sequence[SizeReport]) -> list[str]:
    lines = [
        "",
        "## In process, same snapshot (bench process, nothing else running)",
        "",
        "| size | status | series (data) | generate_latest | serve plain | serve gzip "
        "| x faster plain / gzip | x faster end to end (vs HTTP p99 at capacity, at 60 s) "
        "| render cold | render warm | render, 5 % changed (a run) | one-shot gzip of data "
        "| landing page | identical bytes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in sizes:
        r = size.render
        lines.append(
            f"| {size.live.name} | {_on_off(size.live.status)} | {r.series} "
            f"| {_ms(r.reference.median)} ms "
            f"| {_ms(r.serve_plain.median)} ms | {_ms(r.serve_gzip.median)} ms "
            f"| {times(r.ratio_plain)} / {times(r.ratio_gzip)} "
            f"| {times(size.http_ratio_plain)} / {times(size.http_ratio_gzip)}, "
            f"{times(size.http_ratio_plain_paced)} / {times(size.http_ratio_gzip_paced)} "
            f"| {_ms(r.render_cold.median)} ms | {_ms(r.render_warm.median)} ms "
            f"| {_ms(r.render_changed.median)} ms | {_ms(r.gzip_compress.median)} ms "
            f"| {_ms(r.landing.median)} ms | {'yes' if r.identical else 'no'} |"
        )
    return lines


def _idle_lines(idles: Sequence[IdleResult]) -> list[str]:
    if not idles:
        return []
    lines = ["", "## Average CPU at a realistic pace", ""]
    for idle in idles:
        status = (
            f"status on (every {idle.status_interval_seconds:.0f} s)"
            if idle.status
            else "status off"
        )
        lines.append(
            f"- {status}: {idle.machines} machines ({idle.targets} evDashboard + "
            f"{idle.status_targets} status targets), interval {idle.interval_seconds:.0f} s, "
            f"gzip scrape every {idle.scrape_every_seconds:.0f} s, measured over "
            f"{idle.measured_seconds:.0f} s: exporter **{idle.cpu_percent:.2f} %** of one core, "
            f"{idle.exporter_cpu_ms_per_request:.2f} ms per request (simulator "
            f"{idle.simulator_cpu_percent:.2f} %, rest of the machine "
            f"{idle.other_cpu_percent:.1f} %, {idle.requests} requests, peak RSS "
            f"{idle.peak_rss_mib:.0f} MiB)."
        )
    return lines
