"""Nothing the vendor's API sends takes the exporter down (issue 19): the probe's
examples, served by the simulator over real HTTP to a real exporter process and to
``--once``. Every value crosses one boundary (exporter/lynx/upstream.py); a record that
fails is skipped and counted; the process stays healthy and every page answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.lynx.upstream import CUT_MARK, MAX_TEXT
from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from tests.harness import (
    REPO,
    parse_exposition,
    promtool_check_metrics,
    running_exporter,
    select,
    simulator_config,
    wait_for,
    write_config,
)

SURROGATE = "\ud800"


def hostile_simulator(fleet: Fleet) -> SimulatorServer:
    """Machines 0-5 of the first actor carry the probe's examples; the rest are fine."""
    actor = fleet.actor_ids()[0]
    m = [str(machine.id) for machine in fleet.machines(actor)]
    sim = SimulatorServer(fleet, page_cap=2)
    records: dict[str, dict[str, object]] = {
        m[0]: {
            "MachineName": f"bad{SURROGATE}name\r\nlevel=info",
            "MachineNumber": f"n{SURROGATE}",
            "GeoCity": f"c{SURROGATE}\u2028ity",
        },
        m[1]: {"MachineName": "x" * 1_000_000, "MachineTypeID": "²"},
        m[2]: {"MachineName": "dup"},
        m[3]: {"MachineName": "dup"},
        m[4]: {"MachineName": f"dup ({m[3]})", "GeoLatitude": 10**400},
        m[5]: {"MachineID": "²"},
    }
    sim.add_fault(Fault(FaultKind.PATCH, endpoint="machines", records=records))
    status_patch = {"LastKeepAliveDateTime": "0001-01-01T00:00:00", "LastGPRSFailureCount": 10**400}
    sim.add_fault(Fault(FaultKind.PATCH, endpoint="status", machine=m[0], patch=status_patch))
    return sim


@pytest.fixture
def hostile() -> Iterator[SimulatorServer]:
    fleet = Fleet(FleetSpec(seed=19, actors=2, machines_per_actor=8, silent_probability=0.0))
    with hostile_simulator(fleet) as sim:
        yield sim


def hostile_config(sim: SimulatorServer, tmp_path: Path) -> Path:
    actors = [{"id": actor, "discover": True} for actor in sim.fleet.actor_ids()]
    document = simulator_config(
        sim.url,
        actors,
        interval="1s",
        machine_status={"enabled": True, "interval": "1s", "timestamps": "Europe/Berlin"},
    )
    document["discovery"] = {"interval": "2s", "machine_types": []}
    return write_config(tmp_path / "config.yaml", document)


def machine_labels(text: str) -> set[str]:
    series = parse_exposition(text)
    return {dict(labels)["machine"] for _, labels in select(series, "nayax_ev_target_up")}


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_the_daemon_survives_every_example_and_counts_what_it_skipped(
    hostile: SimulatorServer, tmp_path: Path
) -> None:
    fleet = hostile.fleet
    actor = fleet.actor_ids()[0]
    ids = [machine.id for machine in fleet.machines(actor)]
    with running_exporter(hostile_config(hostile, tmp_path)) as exporter:
        wait_for(exporter.ready, timeout=30, what="every target polled once")
        wait_for(lambda: "dup" in exporter.scrape(), timeout=15, what="the discovered machines")
        for path in ("/", "/targets/1", "/-/healthy", "/-/ready"):
            response = requests.get(f"{exporter.url}{path}", timeout=5)
            assert response.status_code == 200, path
            assert len(response.content) < 200_000, path  # no megabyte names in the pages
        text = exporter.scrape()
        promtool_check_metrics(text)
        assert len(text) < 300_000
        labels = machine_labels(text)
        assert "bad\ufffdname  level=info" in labels  # one line, no surrogate
        long_name = next(label for label in labels if label.startswith("xxx"))
        assert len(long_name) == MAX_TEXT and long_name.endswith(CUT_MARK)
        assert {f"dup ({ids[2]})", f"dup ({ids[3]}) (2)", f"dup ({ids[3]})"} <= labels
        series = parse_exposition(text)
        skipped = select(series, "nayax_ev_records_skipped_total", kind="discovery")
        assert (
            skipped[
                (
                    "nayax_ev_records_skipped_total",
                    frozenset({("kind", "discovery"), ("reason", "bad_id")}),
                )
            ]
            >= 1
        )
        dropped = select(series, "nayax_ev_values_dropped_total", kind="machine_status")
        assert any(dict(k[1])["reason"] == "timestamp_out_of_range" for k in dropped)
        keepalives = select(series, "nayax_ev_machine_last_keepalive_timestamp_seconds")
        assert keepalives and min(keepalives.values()) > 946_684_800  # never year 1
        assert str(ids[5]) not in {dict(k[1])["machine_id"] for k in keepalives}
        # The machine whose status carries a 10^400 count is down with a typed reason.
        status_up = select(series, "nayax_ev_target_up", window="status")
        down = [dict(k[1])["machine"] for k, v in status_up.items() if v == 0]
        assert down == ["bad\ufffdname  level=info"]
        assert peak_rss_mib(exporter.process.pid) < 160  # type: ignore[union-attr]
    events = [entry["event"] for entry in exporter.logs()]  # every line is JSON
    assert "background thread died" not in events
    assert "poll failed unexpectedly" not in events
    assert "target could not be rendered; shown as down" not in events


def test_once_survives_every_example_and_prints_a_valid_exposition(
    hostile: SimulatorServer, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--once",
            f"--config.file={hostile_config(hostile, tmp_path)}",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, stderr  # one status target is down: bad_payload
    assert "Traceback" not in stderr
    text = result.stdout.decode("utf-8")
    promtool_check_metrics(text)
    assert "bad\ufffdname  level=info" in machine_labels(text)


def test_ten_pages_of_megabyte_names_cost_no_memory_to_speak_of(tmp_path: Path) -> None:
    """The probe: ten listing pages, each under the 1 MiB cap with one 1,000,000-
    character name, once grew /metrics to 150 MB and the process to 605 MiB."""
    fleet = Fleet(FleetSpec(seed=5, actors=1, machines_per_actor=10, silent_probability=0.0))
    names = {
        str(m.id): {"MachineName": f"{i}" + "y" * 999_990}
        for i, m in enumerate(fleet.machines(fleet.actor_ids()[0]))
    }
    with SimulatorServer(fleet, page_cap=1) as sim:
        sim.add_fault(Fault(FaultKind.PATCH, endpoint="machines", records=names))
        with running_exporter(hostile_config(sim, tmp_path)) as exporter:
            wait_for(exporter.ready, timeout=30, what="every target polled once")
            wait_for(lambda: "yyy" in exporter.scrape(), timeout=15, what="the listed names")
            metrics = exporter.scrape()
            landing = requests.get(exporter.url, timeout=5).content
            peak = peak_rss_mib(exporter.process.pid)  # type: ignore[union-attr]
    labels = [label for label in machine_labels(metrics) if "yyy" in label]
    assert len(labels) == 10 and all(len(label) == MAX_TEXT for label in labels)
    assert len(metrics) < 100_000 and len(landing) < 100_000
    assert peak < 100, f"peak RSS {peak:.0f} MiB"


@pytest.mark.e2e
def test_a_real_prometheus_keeps_one_series_per_target_whatever_the_names(
    tmp_path: Path,
) -> None:
    """Names that once published one series twice (machines "dup", "dup" and
    "dup (<id>)"): a real Prometheus ingests one `nayax_ev_target_up` series per
    target, and the target that is down is visible as down."""
    import yaml

    from tests.conftest import require_tool
    from tests.prometheus_server import running_prometheus

    fleet = Fleet(FleetSpec(seed=21, actors=1, machines_per_actor=4, silent_probability=0.0))
    ids = [str(m.id) for m in fleet.machines(fleet.actor_ids()[0])]
    names = {ids[0]: "dup", ids[1]: "dup", ids[2]: f"dup ({ids[1]})", ids[3]: f"dup ({ids[1]}) (2)"}
    with SimulatorServer(fleet) as sim:
        sim.add_fault(
            Fault(
                FaultKind.PATCH,
                endpoint="machines",
                records={k: {"MachineName": v} for k, v in names.items()},
            )
        )
        # One machine's polls fail: its target_up must be its own 0, never hidden.
        sim.add_fault(Fault(FaultKind.STATUS, status=500, endpoint="status", machine=ids[2]))
        document = simulator_config(
            sim.url,
            [{"id": fleet.actor_ids()[0], "discover": True}],
            machine_status={"enabled": True, "interval": "1s"},
        )  # the default machine types: the chargers
        with running_exporter(write_config(tmp_path / "c.yaml", document)) as exporter:
            wait_for(exporter.ready, timeout=30, what="every target polled once")
            targets = len(select(parse_exposition(exporter.scrape()), "nayax_ev_target_up"))
            config = tmp_path / "prometheus.yml"
            scrape = {"job_name": "nayax-ev", "static_configs": [{"targets": [exporter.url[7:]]}]}
            config.write_text(
                yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape]})
            )
            flags = [f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
            with running_prometheus(
                require_tool("prometheus"), flags, tmp_path / "prometheus.log"
            ) as prometheus:

                def query(expr: str) -> list[dict[str, Any]]:
                    answer = requests.get(
                        f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=5
                    ).json()
                    return list(answer["data"]["result"])

                wait_for(lambda: bool(query("nayax_ev_target_up")), timeout=20, what="a scrape")
                series = query("nayax_ev_target_up")
                per_labels = query("count by (actor_id, machine, window) (nayax_ev_target_up)")
    assert len(series) == targets  # every target its own series, none merged
    assert all(float(s["value"][1]) == 1.0 for s in per_labels)
    down = [s["metric"] for s in series if float(s["value"][1]) == 0.0]
    labels = {s["metric"].get("machine", "") for s in series}
    assert {f"dup ({ids[0]})", f"dup ({ids[1]}) (3)", f"dup ({ids[1]})"} <= labels
    assert down == [{**down[0], "machine": f"dup ({ids[1]})", "window": "status"}]
