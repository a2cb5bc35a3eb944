"""End to end: a real Prometheus scrapes cumulative windows' counters across a month's
end and a restart of the exporter, and ``increase()`` equals the simulator's ground
truth (the sum of its transactions in the span) to within one poll at each end.

The exporter cannot wait for a real month's end: it runs under libfaketime (Debian
package ``faketime``, installed by scripts/setup.sh --test), its wall clock a fixed
offset ahead, 40 s before 1 March 00:00 in Berlin; the simulator's clock (``POST
/_sim/clock``, here set in-process) reads the same instant and runs at the same rate.
Only the wall clock is faked (FAKETIME_DONT_FAKE_MONOTONIC): a faked monotonic clock
stalls Python's thread waits. That setting breaks ``time.sleep`` in libfaketime 0.9.10,
so the exporter process starts with tests/faketime_site/sitecustomize.py, which makes
``time.sleep`` an Event wait; nothing in exporter/ knows about any of this. Prometheus
runs on real time: its samples carry real timestamps, their values the faked month's.
"""

from __future__ import annotations

import glob
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml

from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from exporter.simulator.history import Totals
from tests.conftest import IN_CI, require_tool
from tests.harness import (
    ExporterProcess,
    free_port,
    simulator_config,
    stop_process,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

BOUNDARY = datetime(2026, 3, 1, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
LEAD = 40.0  # faked seconds from the exporter's start to the month's end
RESTART_AT = BOUNDARY - 15.0  # faked time of the restart
END_AT = BOUNDARY + 20.0  # faked time of the last look
# Seconds a scraped value may lag the instant it was scraped at: the poll (every
# second), the render after it (at most one a second), then the scrape.
POLL_LAG = 3.0
ENERGY = "nayax_ev_operator_cumulative_energy_joules_total"
SESSIONS = "nayax_ev_machine_cumulative_charging_sessions_total"
SALES = "nayax_ev_operator_cumulative_sales_amount_total"


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        if IN_CI:
            pytest.fail("libfaketime is not installed; scripts/setup.sh --test installs it")
        pytest.skip("libfaketime is not installed")
    return found[0]


@dataclass
class Stack:
    fleet: Fleet
    simulator: SimulatorServer
    prometheus_url: str
    offset: float  # faked minus real seconds
    start_exporter: Any

    def faked(self, real: float) -> float:
        return real + self.offset

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.prometheus_url}/api/v1/query",
            params={"query": expr, "time": f"{at:.3f}"},
            timeout=10,
        )
        body = response.json()
        assert body.get("status") == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    prometheus_bin = require_tool("prometheus")
    preload = libfaketime()
    # Busy chargers (a session every few seconds), no refunds: every figure is exact.
    fleet = Fleet(
        FleetSpec(
            seed=5,
            actors=1,
            machines_per_actor=2,
            silent_probability=0.0,
            activity=1000.0,
            refund_share=0.0,
        )
    )
    simulator = SimulatorServer(fleet, tokens="sim-token")
    simulator.start()
    actor = fleet.actor_ids()[0]
    machines = [{"id": m.id, "name": f"Bay {i}"} for i, m in enumerate(fleet.machines(actor))]
    windows = [
        {"name": "mtd", "cumulative": "month", "timezone": "Europe/Berlin"},
        {"name": "ytd", "cumulative": "year", "timezone": "Europe/Berlin"},
    ]
    windows[0]["max_request_span"] = "day"  # the month day by day, the year month by month
    actors = [{"id": actor, "name": "Acme", "currency": "EUR", "machines": machines}]
    config = write_config(
        tmp_path / "exporter.yaml",
        simulator_config(simulator.url, actors, interval="1s", windows=windows),
    )
    offset = float(math.floor(BOUNDARY - LEAD - time.time()))
    simulator.clock.set(time.time() + offset)
    port = free_port()
    environment = {
        "PYTHONPATH": str(Path(__file__).parent / "faketime_site"),
        "LD_PRELOAD": preload,
        "FAKETIME": f"{offset:+.0f}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }

    def start_exporter() -> ExporterProcess:
        return ExporterProcess(args=[f"--config.file={config}"], env=environment, port=port).start()

    prometheus_port = free_port()
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "nayax-ev", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                ],
            }
        )
    )
    process = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Stack(fleet, simulator, f"http://127.0.0.1:{prometheus_port}", offset, start_exporter)
    finally:
        stop_process(process)
        simulator.stop()


def truth(stack: Stack, start: float, end: float, machine: bool = False) -> Totals:
    actor = stack.fleet.actor_ids()[0]
    chosen = stack.fleet.machines(actor)[0] if machine else None
    return stack.fleet.totals(
        actor, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), chosen
    )


def samples(stack: Stack, selector: str, at: float, seconds: float) -> list[tuple[float, float]]:
    (series,) = stack.query(f"{selector}[{seconds:.0f}s]", at)
    return [(float(t), float(v)) for t, v in series["values"]]


def test_increase_across_the_months_end_and_a_restart_equals_the_ground_truth(
    stack: Stack,
) -> None:
    exporter = stack.start_exporter()
    try:
        begun = time.time()
        wait_for(
            lambda: bool(stack.query(f'{ENERGY}{{window="mtd"}}', time.time())),
            timeout=30,
            what="Prometheus to have the counters",
        )
        wait_for(lambda: stack.faked(time.time()) >= RESTART_AT, timeout=60, what="the restart")
        exporter.stop()
        exporter = stack.start_exporter()  # the same port, the same faked clock
        wait_for(lambda: stack.faked(time.time()) >= END_AT, timeout=60, what="the end")
        wait_for(exporter.ready, timeout=10, what="a poll after the restart")
    finally:
        exporter.stop()
    now = time.time()
    span = now - begun + 5
    for window, anchor_resets in (("mtd", 1), ("ytd", 0)):
        selector = f'{ENERGY}{{window="{window}"}}'
        points = samples(stack, selector, now, span)
        first, last = points[0][0], points[-1][0]
        # Aligned on the samples: Prometheus extrapolates nothing (beyond a millisecond).
        rng = f"{(last - first) * 1000 + 1:.0f}ms"
        (increase,) = stack.query(f"increase({selector}[{rng}])", last)
        (resets,) = stack.query(f"resets({selector}[{rng}])", last)
        assert float(resets["value"][1]) == anchor_resets  # the restart is no reset
        start, end = stack.faked(first), stack.faked(last)
        expected = truth(stack, start, end).energy_wh * 3600.0
        slack = poll_slack(stack, start, end, crosses_anchor=window == "mtd")
        got = float(increase["value"][1])
        assert abs(got - expected) <= slack, (window, got, expected, slack)
        assert expected > 3 * slack  # the comparison says something
    # At the last sample: once the exporter stopped, its series went stale.
    check_created_and_machine_sessions(stack, last, span)


def poll_slack(stack: Stack, start: float, end: float, *, crosses_anchor: bool) -> float:
    """The energy of one poll's lag before each end (and before the month's end, whose
    last seconds' sessions the month counter's reset drops), plus rounding."""
    lag = truth(stack, start - POLL_LAG, start).energy_wh
    lag += truth(stack, end - POLL_LAG, end).energy_wh
    if crosses_anchor:
        lag += truth(stack, BOUNDARY - POLL_LAG, BOUNDARY).energy_wh
    return lag * 3600.0 + 1.0


def check_created_and_machine_sessions(stack: Stack, now: float, span: float) -> None:
    """`_created` tells Prometheus where each counter starts; a machine's sessions
    (integers) agree with its transactions as well. ``now``: a scraped instant."""
    (created,) = stack.query(
        'nayax_ev_operator_cumulative_energy_joules_created{window="mtd"}', now
    )
    assert float(created["value"][1]) == BOUNDARY
    (created,) = stack.query(
        'nayax_ev_operator_cumulative_energy_joules_created{window="ytd"}', now
    )
    assert (
        float(created["value"][1])
        == datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    )
    selector = f'{SESSIONS}{{window="ytd",machine="Bay 0"}}'
    points = samples(stack, selector, now, span)
    first, last = points[0][0], points[-1][0]
    rng = f"{(last - first) * 1000 + 1:.0f}ms"
    (increase,) = stack.query(f"increase({selector}[{rng}])", last)
    start, end = stack.faked(first), stack.faked(last)
    expected = truth(stack, start, end, machine=True).sessions
    lag = truth(stack, start - POLL_LAG, start, machine=True).sessions
    lag += truth(stack, end - POLL_LAG, end, machine=True).sessions
    assert abs(float(increase["value"][1]) - expected) <= lag + 0.01, (expected, lag)
    assert expected > lag
    assert stack.query(f'{SALES}{{window="ytd"}}', now)  # sales too, in the actor's currency
