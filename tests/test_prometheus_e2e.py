"""End to end with a real Prometheus server: simulator → exporter → Prometheus.

Every dashboard query (variables substituted with real values) must return
data on a healthy fleet (no "No data" panel: the error panels show 0), a 429
must then show in its panel, and NayaxEVMachinesSilent must reach `firing`
once the simulator silences machines, and the uptime signal must drop to 0 for
those chargers. The shipped rules are used as they are, except that every
`for:` and group interval is shortened in the test's copy so the alert fires
within seconds; no rule may fail to evaluate.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from tests.conftest import require_tool
from tests.harness import (
    REPO,
    ExporterProcess,
    simulator_config,
    wait_for,
    write_config,
)
from tests.prometheus_server import running_prometheus

pytestmark = pytest.mark.e2e

DASHBOARD = REPO / "grafana" / "dashboards" / "nayax-ev.json"
UPTIME_DASHBOARD = REPO / "grafana" / "dashboards" / "nayax-ev-uptime.json"
RULES = REPO / "prometheus" / "alerts.yml"
JOB = "nayax-ev"
RATE_INTERVAL = "15s"  # Grafana's $__rate_interval is at least 4 scrape intervals


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows included."""
    document = json.loads(path.read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))

    walk(document["panels"])
    return found


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, metric selector, label) of every label_values() variable."""
    document = json.loads(DASHBOARD.read_text())
    found = []
    for variable in document["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", str(text or ""))
        if match:
            found.append((variable["name"], match.group(1), match.group(2)))
    return found


def test_queries_are_extracted() -> None:
    # Guards the extraction itself: an empty list would make the e2e test vacuous.
    assert len(dashboard_queries()) >= 20
    assert {v for v, _, _ in variable_queries()} == {"job", "actor", "machine", "window"}


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        response = requests.get(
            f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=10
        )
        values: list[str] = response.json()["data"]
        return values

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = requests.get(f"{self.url}/api/v1/alerts", timeout=10).json()[
            "data"
        ]["alerts"]
        return alerts

    def rule_errors(self) -> dict[str, str]:
        """Rule name -> last evaluation error, for every rule that failed."""
        groups = requests.get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return {
            rule["name"]: rule.get("lastError", "")
            for group in groups
            for rule in group["rules"]
            if rule.get("health") == "err"
        }

    def targets_up(self) -> bool:
        active = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"][
            "activeTargets"
        ]
        return bool(active) and all(t["health"] == "up" for t in active)


def fast_rules(tmp: Path) -> Path:
    """The shipped rules with every `for:` shortened to 2s."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    path = tmp / "alerts.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[SimulatorServer, ExporterProcess, Prometheus]]:
    prometheus_bin = require_tool("prometheus")
    fleet = Fleet(FleetSpec(seed=3, actors=2, machines_per_actor=4, silent_probability=0.0))
    simulator = SimulatorServer(fleet, tokens="sim-token")
    simulator.start()
    names = ["Acme Charging", "Volt Parking"]
    actors = [
        {
            "id": actor_id,
            "name": name,
            "currency": "EUR",
            "machines": [
                {"id": m.id, "name": f"{name} {i}"} for i, m in enumerate(fleet.machines(actor_id))
            ],
        }
        for name, actor_id in zip(names, fleet.actor_ids(), strict=True)
    ]
    config = write_config(
        tmp_path / "exporter.yaml",
        simulator_config(
            simulator.url,
            actors,
            interval="1s",
            windows=[{"name": "24h", "rolling": "24h"}, {"name": "today", "calendar": "day"}],
            machine_status={"interval": "1s"},  # the Machine status row needs data too
        ),
    )
    exporter = ExporterProcess(args=[f"--config.file={config}"]).start()
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(fast_rules(tmp_path))],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    }
                ],
            }
        )
    )
    try:
        with running_prometheus(
            prometheus_bin,
            [
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            ],
            tmp_path / "prometheus.log",
        ) as running:
            yield simulator, exporter, Prometheus(running.url, running.process)
    finally:
        exporter.stop()
        simulator.stop()


def grafana_regex_escape(value: str) -> str:
    """What Grafana's Prometheus data source does to a variable value used in
    `=~`: a doubled backslash before each regex metacharacter (the PromQL
    string literal turns it back into one)."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value)


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name, value in values.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in expr, expr
    return expr


def check_uptime_rules(prometheus: Prometheus) -> None:
    """After two of Acme's chargers were silenced: the uptime signal, recorded by the
    shipped rules from the exporter's real series (one per charger, no instance
    label, 0 for the two silenced ones), and the uptime dashboard's queries."""

    def communicating() -> dict[str, float]:
        found = prometheus.query("nayax_ev:machine_communicating")
        assert all("instance" not in r["metric"] for r in found)
        return {r["metric"]["machine"]: float(r["value"][1]) for r in found}

    silenced = {"Acme Charging 0", "Acme Charging 1"}  # silence() takes the first ones

    def signal_shows_outage() -> bool:
        return {name for name, up in communicating().items() if up == 0} == silenced

    wait_for(signal_shows_outage, timeout=30, interval=0.5, what="the uptime signal at 0")
    assert len(communicating()) == 8

    # Every query of the "Charger uptime" dashboard runs on the real server (its
    # 30-day series need an hour of recording; the per-minute one counts already).
    everything = {"job": JOB, "actor": ".+", "machine": ".+"}
    uptime_queries = dict(dashboard_queries(UPTIME_DASHBOARD))
    for expr in uptime_queries.values():
        prometheus.query(substitute(expr, everything))  # asserts status "success"
    (in_outage,) = prometheus.query(
        substitute(uptime_queries["Chargers in outage now"], everything)
    )
    assert float(in_outage["value"][1]) == 2


def test_every_dashboard_query_returns_data_and_silent_alert_fires(
    stack: tuple[SimulatorServer, ExporterProcess, Prometheus],
) -> None:
    simulator, exporter, prometheus = stack
    wait_for(prometheus.targets_up, timeout=20, what="prometheus scraping the exporter")

    # Variables first, as Grafana resolves them: real values from Prometheus.
    values = {"job": JOB}
    for variable, raw_selector, label in variable_queries():
        selector = substitute(raw_selector, values)

        def resolved(selector: str = selector, label: str = label) -> bool:
            return bool(prometheus.label_values(label, selector))

        wait_for(resolved, timeout=30, what=f"variable {variable}")
        options = prometheus.label_values(label, selector)
        values[variable] = grafana_regex_escape(sorted(options)[0])
    assert values["actor"] == "Acme Charging"

    # A healthy fleet (no fault injected yet): no panel may show "No data",
    # the error and 429 panels included (they show 0).
    pending = {substitute(expr, values): title for title, expr in dashboard_queries()}

    def all_answered() -> bool:
        for expr in list(pending):
            if prometheus.query(expr):
                del pending[expr]
        return not pending

    try:
        wait_for(all_answered, timeout=45, interval=1.0, what="every dashboard query")
    except AssertionError:
        raise AssertionError(f"panels with No data on a healthy fleet: {pending}") from None
    assert all(r.fault is None for r in simulator.requests())

    # The fallbacks must not hide a real fault: 429s show in the 429 panel. (More
    # than one: the first creates the code="429" series, which rate() sees only
    # from its second sample on.)
    actor_id = simulator.fleet.actor_ids()[0]
    simulator.add_fault(
        Fault(kind=FaultKind.STATUS, status=429, retry_after="1", actor_id=actor_id, remaining=4)
    )
    (rate_limited,) = [
        substitute(expr, values)
        for title, expr in dashboard_queries()
        if title == "Rate-limited requests (HTTP 429)"
    ]

    def rate_limited_shown() -> bool:
        return any(float(r["value"][1]) > 0 for r in prometheus.query(rate_limited))

    wait_for(rate_limited_shown, timeout=30, interval=1.0, what="the 429 in its panel")

    # Nothing silent yet: the silence alert must not be pending or firing.
    assert not [
        a for a in prometheus.alerts() if a["labels"]["alertname"] == "NayaxEVMachinesSilent"
    ]

    simulator.fleet.silence(actor_id, 2)

    def silent_alert_firing() -> bool:
        return any(
            a["labels"]["alertname"] == "NayaxEVMachinesSilent"
            and a["state"] == "firing"
            and a["labels"]["actor"] == "Acme Charging"
            for a in prometheus.alerts()
        )

    wait_for(silent_alert_firing, timeout=30, interval=0.5, what="NayaxEVMachinesSilent firing")
    firing = [a for a in prometheus.alerts() if a["labels"]["alertname"] == "NayaxEVMachinesSilent"]
    assert {a["labels"]["actor"] for a in firing} == {"Acme Charging"}
    assert "2 silent machine" in firing[0]["annotations"]["description"]

    check_uptime_rules(prometheus)
    assert prometheus.rule_errors() == {}
    assert exporter.healthy()
