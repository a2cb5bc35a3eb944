"""The benchmark harness runs end to end at a tiny size and writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import REPO

MACHINES = 100
TARGETS = MACHINES + 1  # one actor (100 machines per actor) plus its actor-wide target
TIMING_KEYS = {"median", "minimum", "maximum", "runs"}
LATENCY_KEYS = {"count", "errors", "p50_ms", "p99_ms", "max_ms", "bytes"}
LIVE_KEYS = {
    "name",
    "machines",
    "actors",
    "windows",
    "targets",
    "interval_seconds",
    "ideal_round_seconds",
    "rounds",
    "round_seconds",
    "round_ratio",
    "throughput_per_second",
    "cpu_seconds_per_round",
    "exporter_cpu_percent",
    "simulator_cpu_percent",
    "other_cpu_percent",
    "scrape_plain",
    "scrape_gzip",
    "scrape_plain_paced",
    "scrape_gzip_paced",
    "peak_rss_mib",
    "rss_mib",
    "startup_seconds",
}
ROUND_KEYS = {
    "seconds",
    "requests",
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
    "machines",
    "targets",
    "interval_seconds",
    "measured_seconds",
    "scrape_every_seconds",
    "cpu_percent",
    "simulator_cpu_percent",
    "other_cpu_percent",
    "requests",
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


def test_bench_runs_end_to_end_at_100_machines(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench.run",
        f"--sizes={MACHINES}",
        "--quick",
        "--scrape-seconds=3",
        f"--idle-machines={MACHINES}",
        "--idle-seconds=4",
        "--idle-scrape-every=1",
        f"--output={tmp_path}",
    ]
    done = subprocess.run(
        command, check=False, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]

    (json_path,) = tmp_path.glob("results-*.json")
    document: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(document) >= {"machine", "settings", "sizes", "idle", "targets"}
    assert set(document["machine"]) == MACHINE_KEYS
    assert document["machine"]["cores"] >= 1
    assert document["settings"]["quick"] is True

    (size,) = document["sizes"]
    live, render = size["live"], size["render"]
    assert set(live) == LIVE_KEYS
    assert (live["machines"], live["targets"], live["windows"]) == (MACHINES, TARGETS, 1)
    assert live["rounds"] and all(set(r) == ROUND_KEYS for r in live["rounds"])
    assert all(r["requests"] >= TARGETS and r["non_200"] == 0 for r in live["rounds"])
    assert live["round_seconds"] > 0.5 * live["ideal_round_seconds"] > 0
    assert live["cpu_seconds_per_round"] > 0 and live["peak_rss_mib"] > 10
    scrapes = ("scrape_plain", "scrape_gzip", "scrape_plain_paced", "scrape_gzip_paced")
    for scrape in (live[name] for name in scrapes):
        assert set(scrape) == LATENCY_KEYS
        assert scrape["count"] >= 3 and scrape["errors"] == 0 and scrape["p99_ms"] > 0
    assert 0 < live["scrape_gzip"]["bytes"] < live["scrape_plain"]["bytes"]

    assert set(render) == RENDER_KEYS
    assert all(set(render[name]) == TIMING_KEYS for name in RENDER_TIMINGS)
    assert render["targets"] == TARGETS
    # Same snapshot, same series: at least a target-up sample per target.
    assert render["series"] == render["reference_series"] >= TARGETS
    assert render["ratio_plain"] > 0 and render["ratio_gzip"] > 0
    assert set(size) == {"live", "render"} | {
        f"http_ratio_{kind}{pace}" for kind in ("plain", "gzip") for pace in ("", "_paced")
    }

    assert set(document["idle"]) == IDLE_KEYS
    assert document["idle"]["requests"] > 0 and document["idle"]["cpu_percent"] > 0

    verdicts = {v["target"]: v for v in document["targets"]}
    assert all(set(v) == {"target", "limit", "measured", "met"} for v in verdicts.values())
    assert any(v["met"] is not None for v in verdicts.values())  # the CPU check ran

    markdown = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert f"| {MACHINES} | {TARGETS} |" in markdown
    assert json_path.name in markdown
