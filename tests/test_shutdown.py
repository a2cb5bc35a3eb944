"""Shutdown: SIGTERM and SIGINT end the process with status 0 within 5 s, even
while every worker is stuck upstream (requests hanging under a 30 s timeout) or
waiting out a long ``Retry-After`` inside a poll."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from exporter.simulator import Fault, FaultKind, SimulatorServer
from tests.harness import ExporterProcess, wait_for, write_config
from tests.test_fault_matrix import (
    TOKEN_AFFECTED,
    TOKEN_CONTROL,
    actor_entry,
    assert_clean_logs,
    fleet_for_tests,
    matrix_config,
    parsed_logs,
)

EXIT_BUDGET = 5.0
UPSTREAM_TIMEOUT = "30s"

HANGING = Fault(FaultKind.HANG, seconds=60.0)
# Within retry_backoff_max, so each poll waits it out between attempts.
RATE_LIMITED = Fault(FaultKind.STATUS, status=429, retry_after="20")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("fault", [HANGING, RATE_LIMITED], ids=["hanging", "retry_after"])
def test_signal_exits_promptly_with_work_stuck_upstream(
    tmp_path: Path, signum: signal.Signals, fault: Fault
) -> None:
    fleet = fleet_for_tests()
    first, second = fleet.actor_ids()
    with SimulatorServer(fleet, tokens={first: TOKEN_AFFECTED, second: TOKEN_CONTROL}) as simulator:
        config = matrix_config(
            simulator.url,
            [
                actor_entry(fleet, first, TOKEN_AFFECTED, "First"),
                actor_entry(fleet, second, TOKEN_CONTROL, "Second"),
            ],
        )
        config["lynx"].update(timeout=UPSTREAM_TIMEOUT, retry_backoff_max="60s")
        simulator.add_fault(fault)
        path = write_config(tmp_path / "config.yaml", config)
        exporter = ExporterProcess(args=[f"--config.file={path}"]).start()
        try:
            # Four targets, four workers. Hanging: every target has a request hanging.
            # Retry-After: each actor's first target waits it out before retrying, and
            # its second waits for the token the 429 holds (no request of its own).
            wanted = 4 if fault.kind is FaultKind.HANG else 2

            def all_stuck() -> bool:
                stuck = {
                    (r.actor_id, r.machine)
                    for r in simulator.requests()
                    if r.fault is not None and r.status in (0, 429)
                }
                return len(stuck) == wanted

            wait_for(all_stuck, timeout=10, what="every worker stuck upstream")
            time.sleep(1.0)  # every target's first poll has begun: all workers are waiting
            assert exporter.process is not None
            signalled = time.monotonic()
            exporter.signal(signum)
            returncode = exporter.process.wait(timeout=EXIT_BUDGET + 5)
            elapsed = time.monotonic() - signalled
        finally:
            if exporter.process is not None and exporter.process.poll() is None:
                exporter.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                exporter.stop(timeout=2)
    assert returncode == 0, "\n".join(exporter.log_lines)
    assert elapsed < EXIT_BUDGET, elapsed
    entries = parsed_logs(exporter.log_lines)
    assert_clean_logs(entries)
    events = [e.get("event") for e in entries]
    assert events.index("shutting down") < events.index("exporter stopped")
