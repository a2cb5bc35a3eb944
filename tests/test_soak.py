"""Soak: about a minute of 20 targets polled every 100 ms while the simulator
throws random faults (each kind with probability 0.2; hangs shorter than the
timeout). Afterwards:

- the exporter's memory (VmRSS) grew less than 10 % after warm-up, and its thread
  and file-descriptor counts stayed bounded;
- ``/metrics`` answered every scrape throughout;
- every request the simulator saw is in ``nayax_ev_api_requests_total`` (and in the
  latency histogram), once polling is quiesced: resets under ``connection``.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from tests.harness import running_exporter, wait_for, write_config
from tests.test_fault_matrix import (
    Scraper,
    assert_clean_logs,
    one,
    parsed_logs,
)

SOAK_SECONDS = 60.0
WARM_UP_SECONDS = 15.0
ACTORS = 4
MACHINES_PER_ACTOR = 4  # 4 x (actor-wide + 4 machines) = 20 targets
PROBABILITY = 0.2
FAULTS = (
    Fault(FaultKind.STATUS, status=503, probability=PROBABILITY),
    Fault(FaultKind.STATUS, status=429, probability=PROBABILITY),  # no Retry-After: back-off
    Fault(FaultKind.RESET, probability=PROBABILITY),
    Fault(FaultKind.TRUNCATED_JSON, probability=PROBABILITY),
    Fault(FaultKind.HANG, seconds=0.3, probability=PROBABILITY),  # slow, within the timeout
    Fault(FaultKind.NAN, probability=PROBABILITY),
)


@dataclass(frozen=True)
class Usage:
    at: float  # seconds since the soak started
    rss_kib: int
    threads: int
    fds: int


def usage_of(pid: int, at: float) -> Usage:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return Usage(
        at=at,
        rss_kib=rss,
        threads=len(os.listdir(f"/proc/{pid}/task")),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
    )


def soak_config(base_url: str, fleet: Fleet, interval: str) -> dict[str, Any]:
    return {
        "lynx": {
            "base_url": base_url,
            "timeout": "1s",
            "max_retries": 1,
            "retry_backoff": "20ms",
            "retry_backoff_max": "200ms",
            "rate_limit_per_second": 0,
            "max_concurrency": 8,
        },
        "poll": {"interval": interval},
        "actors": [
            {
                "id": actor_id,
                "token": f"soak-token-{actor_id}",
                "machines": [{"id": m.id} for m in fleet.machines(actor_id)],
            }
            for actor_id in fleet.actor_ids()
        ],
    }


@pytest.mark.soak
@pytest.mark.serial  # its RSS and fd bounds want a quiet machine
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_soak(tmp_path: Path) -> None:
    fleet = Fleet(FleetSpec(seed=9, actors=ACTORS, machines_per_actor=MACHINES_PER_ACTOR))
    tokens = {actor_id: f"soak-token-{actor_id}" for actor_id in fleet.actor_ids()}
    usage: list[Usage] = []
    with SimulatorServer(fleet, tokens=tokens) as simulator:
        config = tmp_path / "config.yaml"
        write_config(config, soak_config(simulator.url, fleet, "100ms"))
        for fault in FAULTS:
            simulator.add_fault(fault)
        with (
            running_exporter(config, "--web.enable-lifecycle") as exporter,
            Scraper(exporter, period=0.5) as scraper,
        ):
            assert exporter.process is not None
            pid = exporter.process.pid
            started = time.monotonic()
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(1.0):
                    usage.append(usage_of(pid, time.monotonic() - started))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                while time.monotonic() - started < SOAK_SECONDS:
                    assert exporter.process.poll() is None, "the exporter died"
                    time.sleep(1.0)
            finally:
                stop.set()
                sampler.join(5)

            # Quiesce: no more faults, and a schedule with nothing due for minutes,
            # so the in-flight polls finish and the request counts settle.
            simulator.clear_faults()
            write_config(config, soak_config(simulator.url, fleet, "1h"))
            reload = requests.post(f"{exporter.url}/-/reload", timeout=10)
            assert reload.status_code == 200, reload.text

            def settled() -> bool:
                before = len(simulator.requests())
                time.sleep(2.5)  # longer than any poll: (1 + max_retries) x timeout
                return len(simulator.requests()) == before

            wait_for(settled, timeout=30, interval=0, what="no more requests")
            series = exporter.series()
            assert exporter.process.poll() is None
        records = simulator.requests()

    scraper.assert_always_answered()

    # --- every request accounted for ------------------------------------------------
    by_code = {
        dict(labels)["code"]: value
        for (name, labels), value in series.items()
        if name == "nayax_ev_api_requests_total"
    }
    assert sum(by_code.values()) == len(records), (by_code, len(records))
    assert one(series, "nayax_ev_api_request_duration_seconds_count") == len(records)
    seen = Counter("connection" if r.fault == "reset" else str(r.status) for r in records)
    assert seen["0"] == 0, "requests the simulator never finished"
    for code in ("429", "503", "connection"):
        assert by_code.get(code) == seen[code] > 0, code
    # A healthy answer that took longer than the timeout is the client's "timeout".
    assert by_code.get("200", 0) + by_code.get("timeout", 0) == seen["200"]
    assert len(records) > SOAK_SECONDS * 50, "the soak barely polled"

    # --- resources: flat after warm-up ---------------------------------------------
    warm = [u for u in usage if u.at <= WARM_UP_SECONDS]
    settled_usage = [u for u in usage if u.at > WARM_UP_SECONDS]
    assert len(warm) >= 5 and len(settled_usage) >= 20, usage
    baseline_rss = statistics.median(u.rss_kib for u in warm[-5:])
    final_rss = statistics.median(u.rss_kib for u in settled_usage[-5:])
    assert final_rss < 1.10 * baseline_rss, (baseline_rss, final_rss)
    # Threads: a fixed set plus one per open scrape connection; fds: sockets to the
    # simulator (at most max_concurrency pooled, plus those being replaced after a
    # reset) and to scrapers. Bounded by the warm-up's peak, not growing.
    warm_threads, warm_fds = max(u.threads for u in warm), max(u.fds for u in warm)
    assert max(u.threads for u in settled_usage) <= warm_threads + 2, usage
    assert max(u.fds for u in settled_usage) <= warm_fds + 4, usage
    third = len(settled_usage) // 3
    early_fds = max(u.fds for u in settled_usage[:third])
    assert max(u.fds for u in settled_usage[-third:]) <= early_fds + 4, usage

    entries = parsed_logs(exporter.log_lines)
    assert_clean_logs(entries)
    assert any(e.get("event") == "target down" for e in entries)
