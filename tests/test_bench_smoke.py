"""The benchmark harness runs end to end at a tiny size, with machine status on (the
default config) and off, and writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import REPO

MACHINES = 100
TARGETS = MACHINES + 1  # one actor (100 machines per actor) plus its actor-wide target
STATUS_TARGETS = MACHINES  # one machine status target per machine, when on
TIMING_KEYS = {"median", "minimum", "maximum", "runs"}
LATENCY_KEYS = {"count", "errors", "p50_ms", "p99_ms", "max_ms", "bytes", "series"}
LIVE_KEYS = {
    "name",
    "status",
    "machines",
    "actors",
    "windows",
    "targets",
    "status_targets",
    "interval_seconds",
    "status_interval_seconds",
    "ideal_round_seconds",
    "first_round",
    "rounds",
    "round_seconds",
    "round_ratio",
    "throughput_per_second",
    "cpu_seconds_per_round",
    "exporter_cpu_ms_per_request",
    "exporter_cpu_percent",
    "simulator_cpu_percent",
    "other_cpu_percent",
    "series",
    "scrape_plain",
    "scrape_gzip",
    "scrape_plain_paced",
    "scrape_gzip_paced",
    "floor_plain",
    "floor_gzip",
    "peak_rss_mib",
    "peak_rss_before_reload_mib",
    "rss_mib",
    "startup_seconds",
}
FIRST_ROUND_KEYS = {
    "targets",
    "ideal_seconds",
    "first_request_seconds",
    "seconds",
    "ratio",
    "ready_seconds",
    "requests",
    "startup_cpu_seconds",
    "exporter_cpu_seconds",
}
ROUND_KEYS = {
    "seconds",
    "requests",
    "status_requests",
    "non_200",
    "exporter_cpu_seconds",
    "simulator_cpu_seconds",
    "other_cpu_seconds",
}
RENDER_TIMINGS = {
    "reference",
    "serve_plain",
    "serve_gzip",
    "render_cold",
    "render_warm",
    "render_changed",
    "gzip_compress",
    "landing",
}
RENDER_KEYS = RENDER_TIMINGS | {
    "targets",
    "series",
    "reference_series",
    "identical",
    "first_difference",
    "body_bytes",
    "gzip_bytes",
    "ratio_plain",
    "ratio_gzip",
}
IDLE_KEYS = {
    "status",
    "machines",
    "targets",
    "status_targets",
    "interval_seconds",
    "status_interval_seconds",
    "measured_seconds",
    "scrape_every_seconds",
    "cpu_percent",
    "simulator_cpu_percent",
    "other_cpu_percent",
    "requests",
    "exporter_cpu_ms_per_request",
    "peak_rss_mib",
}
MACHINE_KEYS = {
    "cpu_model",
    "cores",
    "python",
    "system",
    "prometheus_client",
    "exporter_version",
    "git_commit",
}


def test_bench_runs_both_status_variants_end_to_end_at_100_machines(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench.run",
        f"--sizes={MACHINES}",
        "--status=both",
        "--quick",
        "--scrape-seconds=3",
        f"--idle-machines={MACHINES}",
        "--idle-seconds=3",
        "--idle-scrape-every=1",
        f"--output={tmp_path}",
    ]
    done = subprocess.run(
        command, check=False, cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]

    (json_path,) = tmp_path.glob("results-*.json")
    document: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(document) >= {"machine", "settings", "sizes", "idle", "targets"}
    assert set(document["machine"]) == MACHINE_KEYS
    assert document["machine"]["cores"] >= 1
    assert document["settings"]["quick"] is True

    on, off = document["sizes"]
    assert (on["live"]["status"], off["live"]["status"]) == (True, False)
    for size in (on, off):
        check_size(size)
    check_status_variants(on["live"], off["live"])
    check_idle(document["idle"])

    verdicts = {v["target"]: v for v in document["targets"]}
    assert all(set(v) == {"issue", "target", "limit", "measured", "met"} for v in verdicts.values())
    assert {v["issue"] for v in verdicts.values()} == {5, 22}
    # Only the CPU checks can run at 100 machines: one per issue, each on its variant.
    ran = [v for v in verdicts.values() if v["met"] is not None]
    assert sorted((v["issue"], "status on" in v["target"]) for v in ran) == [
        (5, False),
        (22, True),
    ]

    markdown = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert f"| {MACHINES} | on | {TARGETS} + {STATUS_TARGETS} |" in markdown
    assert f"| {MACHINES} | off | {TARGETS} + 0 |" in markdown
    assert json_path.name in markdown


def check_size(size: dict[str, Any]) -> None:
    """One variant's live figures and in-process comparison are complete and sane."""
    live, render = size["live"], size["render"]
    assert set(live) == LIVE_KEYS
    assert (live["machines"], live["targets"], live["windows"]) == (MACHINES, TARGETS, 1)
    assert live["rounds"] and all(set(r) == ROUND_KEYS for r in live["rounds"])
    assert all(r["requests"] >= TARGETS and r["non_200"] == 0 for r in live["rounds"])
    assert live["round_seconds"] > 0.5 * live["ideal_round_seconds"] > 0
    assert live["cpu_seconds_per_round"] > 0 and live["peak_rss_mib"] > 10
    assert 0 < live["exporter_cpu_ms_per_request"] < 1000 * live["cpu_seconds_per_round"]
    first = live["first_round"]
    assert set(first) == FIRST_ROUND_KEYS
    assert first["targets"] == TARGETS + live["status_targets"]
    # Start-up comes first, then the round; it ends before /-/ready answered.
    assert 0 < first["first_request_seconds"] < first["seconds"] < first["ready_seconds"]
    assert live["startup_seconds"] == first["ready_seconds"]
    assert first["requests"] >= first["targets"]
    assert first["startup_cpu_seconds"] > 0 and first["exporter_cpu_seconds"] >= 0
    scrapes = ("scrape_plain", "scrape_gzip", "scrape_plain_paced", "scrape_gzip_paced")
    for scrape in (live[name] for name in (*scrapes, "floor_plain", "floor_gzip")):
        assert set(scrape) == LATENCY_KEYS
        assert scrape["count"] >= 3 and scrape["errors"] == 0 and scrape["p99_ms"] > 0
    assert 0 < live["scrape_gzip"]["bytes"] < live["scrape_plain"]["bytes"]
    # The same exposition either way: the gzip body holds as many series.
    assert live["series"] == live["scrape_plain"]["series"] == live["scrape_gzip"]["series"]
    # The floor serves the exporter's bodies of a moment before: the same exposition.
    floor_plain, floor_gzip = live["floor_plain"], live["floor_gzip"]
    assert floor_plain["series"] == floor_gzip["series"] == live["series"]
    assert 0 < floor_gzip["bytes"] < floor_plain["bytes"]
    assert 10 < live["peak_rss_before_reload_mib"] <= live["peak_rss_mib"]

    assert set(render) == RENDER_KEYS
    assert all(set(render[name]) == TIMING_KEYS for name in RENDER_TIMINGS)
    assert render["targets"] == TARGETS + live["status_targets"]
    # Same snapshot, same series: at least a target-up sample per target, and the
    # live exposition adds the exporter's own families.
    assert render["series"] == render["reference_series"] >= render["targets"]
    assert render["identical"] is True
    assert live["series"] > render["series"]
    assert render["ratio_plain"] > 0 and render["ratio_gzip"] > 0
    assert set(size) == {"live", "render"} | {
        f"http_ratio_{kind}{pace}" for kind in ("plain", "gzip") for pace in ("", "_paced")
    }


def check_status_variants(on: dict[str, Any], off: dict[str, Any]) -> None:
    """Status on is the default config: a status target per machine at the default
    5 m interval, polled in the first round (not in the steady ones), and its series
    published; off has none."""
    assert (on["status_targets"], on["status_interval_seconds"]) == (STATUS_TARGETS, 300.0)
    assert (off["status_targets"], off["status_interval_seconds"]) == (0, None)
    assert on["first_round"]["ideal_seconds"] > on["ideal_round_seconds"]
    assert off["first_round"]["ideal_seconds"] == off["ideal_round_seconds"]
    assert all(r["status_requests"] == 0 for r in on["rounds"] + off["rounds"])
    assert on["series"] > off["series"] + STATUS_TARGETS


def check_idle(idles: list[dict[str, Any]]) -> None:
    assert [i["status"] for i in idles] == [True, False]
    for idle in idles:
        assert set(idle) == IDLE_KEYS
        assert idle["requests"] > 0 and idle["cpu_percent"] > 0
        assert idle["exporter_cpu_ms_per_request"] > 0
    assert [i["status_targets"] for i in idles] == [STATUS_TARGETS, 0]
