"""The targets the benchmark checks, each with the issue that set it and the
variant it is checked on, and the figures' text forms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.render import RenderResult
from bench.scenario import IdleResult, SizeResult
from bench.scrape import LatencyStats

MIB_PER_MB = 1e6 / 2**20  # the targets are in MB (10^6 bytes); /proc counts KiB
HEADLINE = "10000"  # the size the targets are set at


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
    issue: int  # the issue that set the target
    target: str
    limit: str
    measured: str
    met: bool | None  # None: the size or variant it needs was not run


def size_report(live: SizeResult, render: RenderResult) -> SizeReport:
    return SizeReport(
        live=live,
        render=render,
        http_ratio_plain=render.reference.median * 1000 / live.scrape_plain.p99_ms,
        http_ratio_gzip=render.reference.median * 1000 / live.scrape_gzip.p99_ms,
        http_ratio_plain_paced=render.reference.median * 1000 / live.scrape_plain_paced.p99_ms,
        http_ratio_gzip_paced=render.reference.median * 1000 / live.scrape_gzip_paced.p99_ms,
    )


def _check(issue: int, target: str, limit: str, measured: str | None, met: bool) -> Verdict:
    return Verdict(issue, target, limit, measured or "not run", met if measured else None)


def _headline(sizes: Sequence[SizeReport], status: bool) -> SizeReport | None:
    return next((s for s in sizes if s.live.name == HEADLINE and s.live.status == status), None)


def _idle(idles: Sequence[IdleResult], status: bool) -> IdleResult | None:
    return next((i for i in idles if i.status == status), None)


def _on_off(status: bool) -> str:
    return "on" if status else "off"


def verdicts(sizes: Sequence[SizeReport], idles: Sequence[IdleResult]) -> list[Verdict]:
    """Issue 5's targets, set before machine status, on the status-off variant;
    issue 22's on the default config (status on)."""
    return [*_issue5(_headline(sizes, False), _idle(idles, False)), *_issue22(sizes, idles)]


def _issue5(big: SizeReport | None, idle: IdleResult | None) -> list[Verdict]:
    at = "@10k, status off"
    if big is None:
        out = [_check(5, f"{what} {at}", "", None, False) for what in ("poll round", "/metrics")]
    else:
        live = big.live
        out = [
            _check(
                5,
                f"steady poll round {at} (1 window, 50 ms, c=32)",
                "≤ 1.15 x ideal",
                f"{live.round_ratio:.2f} x ideal ({live.round_seconds:.1f} s vs "
                f"{live.ideal_round_seconds:.1f} s)",
                live.round_ratio <= 1.15,
            ),
            *_scrape_checks(5, live, at, paced=True),
            *_generate_latest_checks(big, at),
            _check(
                5,
                f"peak RSS {at}",
                "≤ 120 MB",
                mb(live.peak_rss_mib),
                live.peak_rss_mib / MIB_PER_MB <= 120.0,
            ),
        ]
    out.append(_cpu_check(5, idle, False, 2.0))
    return out


def _issue22(sizes: Sequence[SizeReport], idles: Sequence[IdleResult]) -> list[Verdict]:
    big = _headline(sizes, True)
    at = "@10k, status on"
    if big is None:
        out = [_check(22, f"{what} {at}", "", None, False) for what in ("first round", "/metrics")]
    else:
        live, first = big.live, big.live.first_round
        out = [
            _check(
                22,
                f"first round {at}, from process start (every target of every kind)",
                "≤ 1.10 x ideal",
                f"{first.ratio:.2f} x ideal ({first.seconds:.1f} s vs {first.ideal_seconds:.1f} s;"
                f" first request after {first.first_request_seconds:.1f} s)",
                first.ratio <= 1.10,
            ),
            *_scrape_checks(22, live, at, paced=False),
            _check(
                22,
                f"peak RSS {at}",
                "≤ 110 MB",
                f"{mb(live.peak_rss_mib)}; before the reload to 60 s: "
                f"{mb(live.peak_rss_before_reload_mib)}",
                live.peak_rss_mib / MIB_PER_MB <= 110.0,
            ),
        ]
    out.append(_cpu_check(22, _idle(idles, True), True, 1.5))
    return out


def _scrape_checks(issue: int, live: SizeResult, at: str, *, paced: bool) -> list[Verdict]:
    phases: list[tuple[str, LatencyStats, str, LatencyStats | None]] = [
        ("plain", live.scrape_plain, "polling at capacity", live.floor_plain),
        ("gzip", live.scrape_gzip, "polling at capacity", live.floor_gzip),
    ]
    if paced:
        phases += [
            ("plain", live.scrape_plain_paced, "60 s interval", None),
            ("gzip", live.scrape_gzip_paced, "60 s interval", None),
        ]
    return [
        _check(
            issue,
            f"/metrics p99 {kind} {at} ({pace})",
            "≤ 20 ms",
            f"{stats.p99_ms:.1f} ms (p50 {stats.p50_ms:.1f} ms)"
            + (f"; the floor {floor.p99_ms:.1f} ms (p50 {floor.p50_ms:.1f} ms)" if floor else ""),
            stats.p99_ms <= 20.0,
        )
        for kind, stats, pace, floor in phases
    ]


def _generate_latest_checks(big: SizeReport, at: str) -> list[Verdict]:
    render = big.render
    ratios = (
        ("end to end (HTTP p99, polling at capacity)", big.http_ratio_plain, big.http_ratio_gzip),
        (
            "end to end (HTTP p99, 60 s interval)",
            big.http_ratio_plain_paced,
            big.http_ratio_gzip_paced,
        ),
        ("in process (serve median)", render.ratio_plain, render.ratio_gzip),
    )
    return [
        _check(
            5,
            f"/metrics vs generate_latest {at}, {how}",
            "≥ 20 x faster",
            f"plain {times(plain)}x, gzip {times(gzipped)}x",
            min(plain, gzipped) >= 20,
        )
        for how, plain, gzipped in ratios
    ]


def _cpu_check(issue: int, idle: IdleResult | None, status: bool, limit: float) -> Verdict:
    if idle is None:
        target = f"CPU @1k, 60 s interval, status {_on_off(status)}"
        return _check(issue, target, f"≤ {limit:g} % of one core", None, False)
    return _check(
        issue,
        f"CPU @{idle.machines} machines, {idle.interval_seconds:.0f} s interval, "
        f"status {_on_off(status)}",
        f"≤ {limit:g} % of one core",
        f"{idle.cpu_percent:.2f} % (over {idle.measured_seconds:.0f} s, "
        f"gzip scrape every {idle.scrape_every_seconds:.0f} s)",
        idle.cpu_percent <= limit,
    )


def mb(mib: float) -> str:
    return f"{mib / MIB_PER_MB:.0f} MB ({mib:.0f} MiB)"


def times(ratio: float) -> str:
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"
