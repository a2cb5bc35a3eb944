"""Paged for real: simulator → exporter → Prometheus → Alertmanager → a webhook here.

The simulator silences one charger; Prometheus evaluates the shipped rules (the
test copy shortens every ``for:``), Alertmanager routes the alert to a webhook
receiver in this test, and the notification must name that charger. Before the
silence, the healthy fleet must produce no notification at all. The exporter
finds the machines by discovery: none is typed into its config.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from tests.conftest import require_tool
from tests.harness import (
    ExporterProcess,
    free_port,
    simulator_config,
    stop_process,
    wait_for,
    write_config,
)
from tests.test_prometheus_e2e import JOB, Prometheus, fast_rules

pytestmark = pytest.mark.e2e

ACTOR_NAME = "Acme Charging"


class Webhook:
    """Alertmanager's webhook receiver: keeps every notification it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook._lock:
                    hook.notifications.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [alert for note in self.notifications for alert in note["alerts"]]


def _process(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _alertmanager(tmp: Path, webhook: Webhook) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / "alertmanager.yml"
    route = {"receiver": "hook", "group_by": ["alertname", "actor_id", "machine"]}
    route |= {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
    receiver = {"name": "hook", "webhook_configs": [{"url": webhook.url, "send_resolved": False}]}
    config.write_text(yaml.safe_dump({"route": route, "receivers": [receiver]}))
    process = _process(
        [
            require_tool("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
    )
    return process, f"127.0.0.1:{port}"


def _prometheus(tmp: Path, exporter: ExporterProcess, alertmanager: str) -> Prometheus:
    port = free_port()
    config = tmp / "prometheus.yml"
    document = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(fast_rules(tmp))],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        ],
    }
    config.write_text(yaml.safe_dump(document))
    process = _process(
        [
            require_tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
    )
    return Prometheus(f"http://127.0.0.1:{port}", process)


@pytest.fixture
def paging(
    tmp_path: Path,
) -> Iterator[tuple[SimulatorServer, Prometheus, Webhook]]:
    fleet = Fleet(FleetSpec(seed=5, actors=1, machines_per_actor=3, silent_probability=0.0))
    simulator = SimulatorServer(fleet, tokens="sim-token")
    simulator.start()
    document = simulator_config(
        simulator.url,
        [{"id": fleet.actor_ids()[0], "name": ACTOR_NAME, "discover": True}],
        interval="1s",
    )
    document["discovery"] = {"interval": "1s"}
    document["machine_status"] = {"interval": "1s"}
    config = write_config(tmp_path / "exporter.yaml", document)
    webhook = Webhook()
    webhook.thread.start()
    processes: list[subprocess.Popen[bytes]] = []
    exporter = ExporterProcess(args=[f"--config.file={config}"]).start()
    try:
        alertmanager, am_address = _alertmanager(tmp_path, webhook)
        processes.append(alertmanager)
        wait_for(lambda: _ready(f"http://{am_address}/-/ready"), timeout=30, what="alertmanager")
        prometheus = _prometheus(tmp_path, exporter, am_address)
        processes.append(prometheus.process)
        wait_for(lambda: _ready(f"{prometheus.url}/-/ready"), timeout=30, what="prometheus")
        yield simulator, prometheus, webhook
    finally:
        for process in reversed(processes):
            stop_process(process)
        exporter.stop()
        webhook.server.shutdown()
        simulator.stop()


def test_a_silenced_charger_pages_with_its_name(
    paging: tuple[SimulatorServer, Prometheus, Webhook],
) -> None:
    simulator, prometheus, webhook = paging
    fleet = simulator.fleet
    actor_id = fleet.actor_ids()[0]
    chargers = fleet.machines(actor_id)

    # Healthy: every charger's keep-alive reaches Prometheus and the rules run
    # over it for longer than the shortened for: and Alertmanager's group_wait.
    def all_statuses() -> bool:
        found = prometheus.query("nayax_ev_machine_last_keepalive_timestamp_seconds")
        return len(found) == len(chargers)

    wait_for(all_statuses, timeout=30, what="every charger's keep-alive in Prometheus")
    time.sleep(6)  # for: 2s + group_wait 1s, twice over: a false alarm would be here by now
    assert webhook.alerts() == [], "a healthy fleet paged somebody"

    fleet.silence(actor_id, 1)  # the first charger: last keep-alive 2 h ago
    silent = chargers[0]

    def paged() -> bool:
        return any(a["labels"].get("alertname") == "NayaxEVMachineSilent" for a in webhook.alerts())

    wait_for(paged, timeout=40, what="a NayaxEVMachineSilent notification")
    pages = [a for a in webhook.alerts() if a["labels"]["alertname"] == "NayaxEVMachineSilent"]
    assert {a["labels"]["machine"] for a in pages} == {silent.name}
    (page,) = pages[:1]
    assert page["labels"]["machine_id"] == str(silent.id)
    assert page["labels"]["actor"] == ACTOR_NAME
    assert page["labels"]["city"] == silent.city
    assert silent.name in page["annotations"]["summary"]
    assert silent.city in page["annotations"]["summary"]
