"""Discovery and machine status through the real pipeline: targets, --once over HTTP
against the simulator for each timestamp convention, and the discovery rules live."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from exporter.config import parse_config
from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from exporter.targets import DISCOVERY, MACHINE_STATUS, MachineInfo, Shard, build_targets
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

CONFIG = """
lynx: {token: t}
windows: [{name: 24h, rolling: 24h}, {name: today, calendar: day}]
machine_status: {interval: 5m}
discovery: {interval: 1h}
actors:
  - {id: 10, name: Ten, discover: true, machines: [{id: 100, name: Hundred}, {id: 7}]}
  - {id: 20, machines: [{number: N-1}]}
"""
LISTED = (
    MachineInfo(machine_id=100, name="Listed name", number="A", city="Lisbon"),
    MachineInfo(machine_id=101, name="Bay", number="B", city="Lisbon", tz_offset_hours=0.0),
)


def test_discovered_machines_become_ordinary_targets() -> None:
    config = parse_config(CONFIG, environ={})
    targets = build_targets(config, discovered={10: LISTED, 20: LISTED})
    keys = [str(t.key) for t in targets]
    assert "10/id:101/24h" in keys and "10/id:101/today" in keys  # evDashboard per window
    assert "machine_status:10/id:101/" in keys
    assert "machine_status:10/id:7/" in keys  # configured, not listed: kept
    assert "discovery:10/-/" in keys
    assert not any(k.startswith("discovery:20") or "20/id:101" in k for k in keys)  # no discover
    assert "machine_status:20/number:N-1/" not in keys  # no MachineID, no /status
    status = {t.machine_label: t for t in targets if t.kind == MACHINE_STATUS}
    assert status["Hundred"].machine.info == LISTED[0]  # type: ignore[union-attr]  # configured name wins, info from the API
    assert status["Bay"].interval == 300.0 and status["Bay"].stale_after == 900.0
    assert all(t.publishes_info for t in status.values())
    # N-1 has no status (no MachineID) and was never listed: nothing to add as info.
    assert sum(t.publishes_info for t in targets) == len(status)
    (listing,) = [t for t in targets if t.kind == DISCOVERY]
    assert listing.interval == 3600.0 and listing.window.name == "discovery"


def test_shards_split_discovered_machines_but_every_replica_lists() -> None:
    config = parse_config(CONFIG, environ={})
    whole = build_targets(config, discovered={10: LISTED})
    parts = [build_targets(config, Shard(i, 3), discovered={10: LISTED}) for i in range(3)]
    polled = [t.key for part in parts for t in part if t.kind != DISCOVERY]
    assert sorted(map(str, polled)) == sorted(str(t.key) for t in whole if t.kind != DISCOVERY)
    assert all(sum(t.kind == DISCOVERY for t in part) == 1 for part in parts)


@pytest.mark.parametrize("convention", ["utc", "machine", "iana"])
def test_once_prints_status_in_utc_for_each_convention(tmp_path: Path, convention: str) -> None:
    """The simulator writes local times for "machine" and "iana"; the exporter,
    told the matching convention, must print the same UTC epoch seconds."""
    fleet = Fleet(FleetSpec(seed=4, actors=1, machines_per_actor=2, silent_probability=0.0))
    actor = fleet.actor_ids()[0]
    served = "utc" if convention == "utc" else "machine"
    with SimulatorServer(fleet, timestamps=served, page_cap=1) as sim:
        silent = fleet.machines(actor)[0]
        fleet.silence(actor, 1, since_s=3 * 3600.0)
        zone = convention
        if convention == "iana":  # the zone of the fleet's site (a whole-hour offset)
            assert silent.tz_offset_hours.is_integer()
            zone = f"Etc/GMT{-int(silent.tz_offset_hours):+d}"
        document = simulator_config(
            sim.url, [{"id": actor, "discover": True}], machine_status={"timestamps": zone}
        )
        config = write_config(tmp_path / "c.yaml", document)
        started = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "--once", f"--config.file={config}"],
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    series = parse_exposition(result.stdout)
    keepalive = select(series, "nayax_ev_machine_last_keepalive_timestamp_seconds")
    assert len(keepalive) == 2  # both chargers, found by discovery (page cap 1)
    by_machine = {dict(k[1])["machine"]: v for k, v in keepalive.items()}
    assert by_machine[silent.name] == pytest.approx(started - 3 * 3600.0, abs=10)
    assert "clock_skew" not in result.stderr and "future" not in result.stderr
    assert select(series, "nayax_ev_discovered_machines")
    info = select(series, "nayax_ev_machine_info", machine=silent.name)
    assert dict(next(iter(info))[1])["city"] == silent.city


def test_a_failed_listing_keeps_the_machines_and_status_faults_are_status_targets(
    tmp_path: Path,
) -> None:
    fleet = Fleet(FleetSpec(seed=6, actors=1, machines_per_actor=3, silent_probability=0.0))
    actor = fleet.actor_ids()[0]
    with SimulatorServer(fleet, page_cap=2) as sim:
        document = simulator_config(
            sim.url, [{"id": actor, "name": "Acme", "discover": True}], machine_status={}
        )
        document["discovery"] = {"interval": "1s"}
        document["machine_status"] = {"interval": "1s"}
        config = write_config(tmp_path / "c.yaml", document)
        with running_exporter(config) as exporter:

            def machines_up() -> bool:
                up = select(exporter.series(), "nayax_ev_target_up", window="status")
                return len(up) == 3 and all(v == 1 for v in up.values())

            wait_for(machines_up, timeout=20, what="3 discovered chargers with status")
            sim.add_fault(Fault(FaultKind.STATUS, status=503, endpoint="machines"))
            sim.add_fault(
                Fault(
                    FaultKind.STATUS,
                    status=500,
                    endpoint="status",
                    machine=str(fleet.machines(actor)[1].id),
                )
            )

            def listing_down() -> bool:
                series = exporter.series()
                down = select(series, "nayax_ev_target_up", window="discovery")
                return list(down.values()) == [0.0]

            wait_for(listing_down, timeout=20, what="the failing listing")
            series = exporter.series()
            status_up = select(series, "nayax_ev_target_up", window="status")
            assert len(status_up) == 3  # the last good list stays
            assert sorted(status_up.values()) == [0.0, 1.0, 1.0]  # one status target down
            assert select(series, "nayax_ev_discovered_machines", actor="Acme")
            landing = requests.get(exporter.url, timeout=5).text
            assert "discovery" in landing


def test_wrong_convention_counts_clock_skew_and_warns_once_per_machine(tmp_path: Path) -> None:
    fleet = Fleet(FleetSpec(seed=4, actors=1, machines_per_actor=2, silent_probability=0.0))
    actor = fleet.actor_ids()[0]
    assert fleet.machines(actor)[0].tz_offset_hours >= 1.0  # local time runs ahead of UTC
    with SimulatorServer(fleet, timestamps="machine") as sim:
        document = simulator_config(
            sim.url, [{"id": actor, "discover": True}], machine_status={"timestamps": "utc"}
        )
        config = write_config(tmp_path / "c.yaml", document)
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "--once", f"--config.file={config}"],
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    series = parse_exposition(result.stdout)
    skew = select(series, "nayax_ev_poll_errors_total", reason="clock_skew")
    assert list(skew.values()) == [2.0]  # one poll of each charger
    assert len(select(series, "nayax_ev_machine_last_keepalive_timestamp_seconds")) == 2
    warnings = [line for line in result.stderr.splitlines() if "in the future" in line]
    assert len(warnings) == 2 and "machine_status.timestamps" in warnings[0]


def test_demo_discovers_and_names_the_silent_chargers() -> None:
    from exporter.demo import DEMO_ACTORS, DEMO_SILENT, demo_fleet

    fleet = demo_fleet()
    silent = {
        (DEMO_ACTORS[index][0], m.name)
        for index, count in DEMO_SILENT
        for m in fleet.machines(fleet.actor_ids()[index])[:count]
    }
    demo = ExporterProcess(args=["--demo", "--log.format=json"]).start()
    try:

        def named() -> bool:
            keepalive = select(demo.series(), "nayax_ev_machine_last_keepalive_timestamp_seconds")
            return len(keepalive) == len(DEMO_ACTORS) * 6  # every charger, none typed by hand

        wait_for(named, timeout=30, what="every demo charger's status")
        series = demo.series()
        now = time.time()
        old = {
            (dict(labels)["actor"], dict(labels)["machine"])
            for (_, labels), value in select(
                series, "nayax_ev_machine_last_keepalive_timestamp_seconds"
            ).items()
            if now - value > 3600
        }
        assert silent == old  # the forced-silent chargers, no random one beside them
        landing = requests.get(demo.url, timeout=5).text
        assert f"Silent machines ({len(silent)})" in landing
        silent_table = landing[landing.index('id="silent"') : landing.index('id="failing"')]
        for actor, machine in silent:
            assert f"<td>{machine}</td><td>{actor}</td>" in silent_table
    finally:
        demo.stop()


def test_reload_keeps_discovered_machines(tmp_path: Path) -> None:
    fleet = Fleet(FleetSpec(seed=8, actors=1, machines_per_actor=3, silent_probability=0.0))
    actor = fleet.actor_ids()[0]
    with SimulatorServer(fleet) as sim:
        document = simulator_config(
            sim.url, [{"id": actor, "discover": True}], machine_status={"interval": "1s"}
        )
        document["discovery"] = {"interval": "1h"}  # listed once, at the start
        config = write_config(tmp_path / "c.yaml", document)
        with running_exporter(config) as exporter:

            def statuses() -> int:
                return len(select(exporter.series(), "nayax_ev_target_up", window="status"))

            wait_for(lambda: statuses() == 3, timeout=20, what="3 discovered chargers")
            document["windows"] = [{"name": "7d", "rolling": "7d"}]
            write_config(tmp_path / "c.yaml", document)
            exporter.signal(signal.SIGHUP)
            wait_for(
                lambda: bool(select(exporter.series(), "nayax_ev_target_up", window="7d")),
                timeout=20,
                what="the reloaded window",
            )
            series = exporter.series()
            assert len(select(series, "nayax_ev_target_up", window="status")) == 3
            assert len(select(series, "nayax_ev_target_up", window="7d")) == 4  # actor + 3
            listings = [r for r in sim.requests() if r.path == "/v1/machines"]
            assert len(listings) == 2  # one listing (a page and the empty one), not re-read


def test_request_budget_counts_each_kind_at_its_own_interval() -> None:
    from exporter.polling.budget import request_budget, summary

    config = parse_config(CONFIG, environ={})
    targets = build_targets(config, discovered={10: LISTED})
    budget = request_budget(config, targets)
    ev = sum(t.kind == "ev_dashboard" for t in targets)
    status = sum(t.kind == MACHINE_STATUS for t in targets)
    assert budget.targets == {"discovery": 1, "ev_dashboard": ev, "machine_status": status}
    assert budget.rate_needed == pytest.approx(ev / 60 + status / 300 + 1 / 3600)
    assert "machine_status" in summary(budget)


def test_discovery_growing_the_fleet_rechecks_the_budget(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """The budget is shown at start for the configured targets only; when discovery
    adds machines past the rate limit, the warning comes then, and the budget
    gauges follow."""
    actor = simulator.fleet.actor_ids()[0]
    document = simulator_config(
        simulator.url, [{"id": actor, "discover": True}], interval="10s", rate_limit_per_second=0.5
    )
    with running_exporter(write_config(tmp_path / "c.yaml", document)) as exporter:
        wait_for(
            lambda: any(e["event"] == "polling over budget" for e in exporter.logs()),
            timeout=20,
            what="the over-budget warning after discovery",
        )
        events = [e["event"] for e in exporter.logs()]
        assert events.index("machine lists changed") < events.index("polling over budget")
        assert events.count("request budget") == 2  # at start, then for the new fleet
        series = exporter.series()
    needed = select(series, "nayax_ev_request_budget_requests_per_second")
    limit = select(series, "nayax_ev_request_budget_rate_limit_requests_per_second")
    machines = len(simulator.fleet.machines(actor))
    assert list(needed.values()) == [pytest.approx((1 + machines) / 10 + 1 / 3600)]  # status is off
    assert list(limit.values()) == [0.5]
