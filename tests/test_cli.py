"""The daemon from the outside: --once, the demo, the HTTP endpoints, promtool.

Real processes, real sockets, the project's own simulator as the vendor.
"""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests

from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from tests.conftest import require_tool
from tests.harness import (
    REPO,
    ExporterProcess,
    parse_exposition,
    running_exporter,
    select,
    simulator_config,
    wait_for,
    write_config,
)

FIGURES = (
    "charging_sessions",
    "transactions",
    "sales_amount",
    "charging_duration_seconds",
    "energy_joules",
)
DATA_FAMILIES = [
    f"nayax_ev_operator_{name}"
    for name in ("machines", "communicating_machines", "active_machines", "silent_machines")
] + [f"nayax_ev_{scope}_{name}" for scope in ("operator", "machine") for name in FIGURES]
# The demo's year-to-date window (cumulative: year) publishes these counters.
COUNTER_FAMILIES = [
    f"nayax_ev_{scope}_cumulative_{name}_total"
    for scope in ("operator", "machine")
    for name in FIGURES
] + ["nayax_ev_cumulative_corrections_total"]
SELF_FAMILIES = [
    "nayax_ev_target_up",
    "nayax_ev_target_last_success_timestamp_seconds",
    "nayax_ev_api_requests_total",
    "nayax_ev_api_request_duration_seconds_bucket",
    "nayax_ev_poll_errors_total",
    "nayax_ev_build_info",
    "nayax_ev_request_budget_requests_per_second",
    "nayax_ev_request_budget_rate_limit_requests_per_second",
]


def run_once(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--once", f"--config.file={config}"],
        capture_output=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def test_once_prints_converted_values(simulator: SimulatorServer, tmp_path: Path) -> None:
    """`--once` against a server that speaks the endpoint: kWh → joules exactly."""
    fleet = simulator.fleet
    actor = fleet.actor_ids()[0]
    machine = fleet.machines(actor)[0]
    config = write_config(
        tmp_path / "c.yaml",
        simulator_config(
            simulator.url,
            [{"id": actor, "name": "A", "currency": "EUR", "machines": [{"id": machine.id}]}],
        ),
    )
    result = run_once(config)
    assert result.returncode == 0, result.stderr.decode()
    series = parse_exposition(result.stdout.decode())
    # What the simulator says for the same machine and window, converted by hand.
    (request,) = [r for r in simulator.requests() if r.machine == str(machine.id)]
    start = datetime.fromisoformat(request.query["StartDate"])
    end = datetime.fromisoformat(request.query["EndDate"])
    assert end - start == timedelta(hours=24)
    expected = fleet.dashboard(
        actor, start=start, end=end, machine=machine, time_period=None, now=end
    )
    figures = expected["MachineDashboard"]
    assert isinstance(figures, dict)
    assert figures["UnitOfMeasureSymbol"] == "kWh"
    energy = select(series, "nayax_ev_machine_energy_joules", machine_id=str(machine.id))
    assert list(energy.values()) == [float(figures["TotalEnergyConsumption"]) * 3.6e6]
    sessions = select(series, "nayax_ev_machine_charging_sessions", machine_id=str(machine.id))
    assert list(sessions.values()) == [float(figures["NumberOfChargingSessions"])]
    assert b"Traceback" not in result.stderr
    # stdout carries nothing but the exposition.
    assert result.stdout.startswith(b"# HELP nayax_ev_operator_machines")


def test_once_exits_1_when_a_target_fails(simulator: SimulatorServer, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        simulator_config(simulator.url, [{"id": simulator.fleet.actor_ids()[0]}, {"id": 999}]),
    )
    result = run_once(config)
    assert result.returncode == 1
    series = parse_exposition(result.stdout.decode())
    assert select(series, "nayax_ev_target_up", actor_id="999").popitem()[1] == 0
    assert (
        select(series, "nayax_ev_poll_errors_total", actor_id="999", reason="not_found").popitem()[
            1
        ]
        == 1
    )


def test_endpoints_and_promtool(simulator: SimulatorServer, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    fleet = simulator.fleet
    actors = [
        {
            "id": actor,
            "currency": "EUR",
            "machines": [{"id": m.id} for m in fleet.machines(actor)[:2]]
            + [{"number": fleet.machines(actor)[2].number, "name": "by number"}],
        }
        for actor in fleet.actor_ids()
    ]
    config = write_config(tmp_path / "c.yaml", simulator_config(simulator.url, actors))
    with running_exporter(config) as exporter:
        wait_for(exporter.ready, timeout=20, what="/-/ready")
        text = exporter.scrape()
        # Ready means the served exposition is complete: every target polled, up.
        up = select(parse_exposition(text), "nayax_ev_target_up")
        assert len(up) == 8 and set(up.values()) == {1.0}, up
        present = {name for name, _ in parse_exposition(text)}
        for family in DATA_FAMILIES + SELF_FAMILIES:
            assert family in present, family
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
        )
        assert checked.returncode == 0
        assert checked.stdout + checked.stderr == b"", (checked.stdout + checked.stderr).decode()

        url = exporter.url
        zipped = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5)
        assert zipped.headers["Content-Encoding"] == "gzip"
        raw = requests.get(
            f"{url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True
        ).raw.read()
        assert gzip.decompress(raw).startswith(b"# HELP nayax_ev_operator_machines")
        om = requests.get(
            f"{url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=5
        )
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.text.endswith("# EOF\n")
        landing = requests.get(f"{url}/", timeout=5)
        assert landing.status_code == 200 and "text/html" in landing.headers["Content-Type"]
        assert 'href="/metrics"' in landing.text and "by number" in landing.text
        assert landing.text.count('<td class="state">up</td>') == 8
        assert requests.get(f"{url}/-/healthy", timeout=5).text == "Healthy\n"
        assert requests.get(f"{url}/-/ready", timeout=5).status_code == 200
        assert requests.get(f"{url}/-/reload", timeout=5).status_code == 405
        assert requests.get(f"{url}/nope", timeout=5).status_code == 404
        # All JSON log lines, no traceback, nothing at error level.
        assert all(line["level"] in ("info", "debug") for line in exporter.logs())


def test_not_ready_until_every_target_polled_once(tmp_path: Path) -> None:
    with SimulatorServer(Fleet(FleetSpec(actors=1, machines_per_actor=1)), latency=1.5) as sim:
        config = write_config(
            tmp_path / "c.yaml", simulator_config(sim.url, [{"id": sim.fleet.actor_ids()[0]}])
        )
        with running_exporter(config) as exporter:
            assert requests.get(f"{exporter.url}/-/ready", timeout=5).status_code == 503
            wait_for(exporter.ready, timeout=10, what="/-/ready")


def test_custom_telemetry_path(simulator: SimulatorServer, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        simulator_config(simulator.url, [{"id": simulator.fleet.actor_ids()[0]}]),
    )
    with running_exporter(config, "--web.telemetry-path=/probe") as exporter:
        assert requests.get(f"{exporter.url}/probe", timeout=5).status_code == 200
        assert requests.get(f"{exporter.url}/metrics", timeout=5).status_code == 404


def test_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("lynx: {token: TKN-x}\nactors: [{id: 1, machines: [{id: 2, number: n}]}]\n")
    process = ExporterProcess(args=[f"--config.file={config}"]).start(wait_healthy=False)
    assert process.process is not None
    assert process.process.wait(timeout=20) == 1
    process.stop()
    logs = process.logs()
    assert any(
        line["level"] == "error"
        and line.get("problem") == "actors[0].machines[0]: set exactly one of id, number"
        for line in logs
    ), logs
    assert all("TKN-x" not in raw for raw in process.log_lines)


def test_demo_serves_every_family_within_30s() -> None:
    """The README's demo command, as a user runs it."""
    demo = ExporterProcess(args=["--demo", "--log.format=logfmt"]).start()
    try:
        started = time.monotonic()
        present: set[str] = set()
        expected = DATA_FAMILIES + COUNTER_FAMILIES + SELF_FAMILIES[:3]
        while time.monotonic() - started < 30:
            present = {name for name, _ in parse_exposition(demo.scrape())}
            if all(f in present for f in expected):
                break
            time.sleep(0.5)
        missing = [f for f in expected if f not in present]
        assert not missing, missing
        demo.signal(signal.SIGTERM)
        assert demo.stop(timeout=5) == 0
        assert b"Demo metrics:" in demo.stdout
    finally:
        demo.stop()


def test_the_demo_listens_on_loopback_unless_told_otherwise() -> None:
    from exporter.cli import parse_args

    assert parse_args(["--demo"]).listen_address == "127.0.0.1:9877"
    assert parse_args([]).listen_address == ":9877"
    assert parse_args(["--demo", "--web.listen-address=:9900"]).listen_address == ":9900"


def test_a_real_start_never_imports_the_simulator(tmp_path: Path) -> None:
    """Only --demo loads the simulator (the layers contract forbids the rest)."""
    code = "import sys, exporter.cli; print('exporter.simulator' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
