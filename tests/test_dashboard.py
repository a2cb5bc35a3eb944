"""Lint and check the generated Grafana dashboards (grafana/dashboards/*.json).

The lint rules follow grafana/dashboard-linter: a templated datasource, job
variables and matchers, $__rate_interval, counters only inside rate/increase,
and units, titles and descriptions on every panel. Both dashboards ("Nayax EV"
and "Charger uptime") get every lint test. PromQL is checked with promtool: one
``check rules`` call parses every query, and one ``test rules`` call runs every
query on series shaped like the exporter's metric contract and the uptime
recording rules. Without promtool these tests skip locally, but fail when ``CI``
is set.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import run_promtool

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "grafana" / "generate_dashboard.py"
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
DASHBOARD_FILE = DASHBOARDS_DIR / "nayax-ev.json"
UPTIME_FILE = DASHBOARDS_DIR / "nayax-ev-uptime.json"
DATASOURCE_PROVISIONING = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVISIONING = ROOT / "grafana" / "provisioning" / "dashboards" / "nayax-ev.yaml"
ALERTS = ROOT / "prometheus" / "alerts.yml"
README = ROOT / "README.md"

# Dashboard uid -> (rows, variables).
LAYOUT = {
    "nayax-ev": (
        ["Fleet health", "Charging business", "Machines", "Machine status", "Exporter health"],
        ["datasource", "job", "actor", "machine", "window"],
    ),
    "nayax-ev-uptime": (
        ["Trailing 30 days", "Per hour"],
        ["datasource", "job", "actor", "machine"],
    ),
}
UIDS = list(LAYOUT)
UPTIME = "nayax-ev-uptime"
DS = {"type": "prometheus", "uid": "${datasource}"}
DS_INPUT = "DS_PROMETHEUS"
JOB = 'job=~"$job"'
INTERVAL_FIGURES = re.compile(
    r"nayax_ev_(operator|machine)_(charging_sessions|transactions|sales_amount"
    r"|charging_duration_seconds|energy_joules)$"
)
# Grafana unit ids this dashboard may use (all in dashboard-linter's list).
KNOWN_UNITS = {
    "none",
    "short",
    "percentunit",
    "kwatth",
    "s",
    "reqps",
    "dateTimeFromNow",
    "m",
}

Panel = dict[str, Any]
Target = dict[str, Any]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def dashboard(uid: str = "nayax-ev") -> dict[str, Any]:
    with (DASHBOARDS_DIR / f"{uid}.json").open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def all_panels(uid: str = "nayax-ev") -> list[Panel]:
    """Every panel, rows included, also those nested in collapsed rows."""
    panels: list[Panel] = []
    for panel in dashboard(uid)["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def panels(uid: str = "nayax-ev") -> list[Panel]:
    """Every panel except rows."""
    return [panel for panel in all_panels(uid) if panel["type"] != "row"]


def targets(uid: str = "nayax-ev") -> Iterator[tuple[Panel, Target]]:
    for panel in panels(uid):
        for target in panel.get("targets", []):
            yield panel, target


def variables(uid: str = "nayax-ev") -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in dashboard(uid)["templating"]["list"]}


def variable_query(var: dict[str, Any]) -> str:
    query = var["query"]
    return query if isinstance(query, str) else str(query["query"])


def label_values(query: str) -> tuple[str, str]:
    """Split ``label_values(selector, label)`` into selector and label."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match, f"not a label_values() query: {query}"
    return match.group(1), match.group(2)


def substitute(expr: str, rate_interval: str) -> str:
    """Replace Grafana variables: $__rate_interval by a duration, the rest by '.+'."""

    def value(match: re.Match[str]) -> str:
        return rate_interval if match.group(1) == "__rate_interval" else ".+"

    return re.sub(r"\$\{?(\w+)\}?", value, expr)


GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matchers) of every vector selector in a PromQL expression.

    A small scanner that is enough for this dashboard's queries: it removes
    grouping clauses, range durations and numbers, then reads ``name{...}``,
    ``{...}`` and bare ``name`` not followed by ``(`` outside string literals.
    """
    text = GROUPING.sub(" ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    found: list[tuple[str, str]] = []

    def take(match: re.Match[str]) -> str:
        found.append((match.group(1) or "", match.group(2)))
        return " "

    text = re.sub(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}", take, text)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", text)  # string arguments (label_replace)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", text)
    for match in re.finditer(r"([A-Za-z_:][\w:]*)(\s*\()?", text):
        if not match.group(2) and match.group(1) not in KEYWORDS:
            found.append((match.group(1), ""))
    return found


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dashboards_are_generated_from_script(tmp_path: Path) -> None:
    result = run_generator(f"--output-dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    generated = sorted(path.name for path in tmp_path.iterdir())
    assert generated == sorted(path.name for path in DASHBOARDS_DIR.glob("*.json"))
    assert generated == sorted(f"{uid}.json" for uid in UIDS)
    for name in generated:
        assert (tmp_path / name).read_text(encoding="utf-8") == (DASHBOARDS_DIR / name).read_text(
            encoding="utf-8"
        ), f"grafana/dashboards/{name} is stale: run python grafana/generate_dashboard.py"


def test_generator_check_notices_a_stale_file(tmp_path: Path) -> None:
    assert run_generator(f"--output-dir={tmp_path}").returncode == 0
    assert run_generator(f"--output-dir={tmp_path}", "--check").returncode == 0
    stale = tmp_path / "nayax-ev-uptime.json"
    stale.write_text(stale.read_text(encoding="utf-8").replace("0.97", "0.96"), encoding="utf-8")
    result = run_generator(f"--output-dir={tmp_path}", "--check")
    assert result.returncode == 1
    assert "nayax-ev-uptime.json" in result.stderr


def test_generator_uses_the_foundation_sdk() -> None:
    """Built with grafana-foundation-sdk, pinned in the test extras."""
    sources = "".join(path.read_text(encoding="utf-8") for path in GENERATOR.parent.glob("*.py"))
    assert "from grafana_foundation_sdk.builders import" in sources
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (pin,) = re.findall(r'"grafana-foundation-sdk==([^"]+)"', pyproject)
    assert pin.endswith("!11.1.0"), "the SDK build must match the Grafana in docker-compose.yml"
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "grafana/grafana:11.1.0" in compose


def test_scanner_finds_selectors() -> None:
    """The helper the lint tests rely on."""
    expr = (
        'sum by (le) (rate(a_total{job=~"$job"}[5m])) / on (x) b{job="y"} '
        "* 3.6e6 > bool c and time() - d"
    )
    assert selectors(expr) == [("a_total", 'job=~"$job"'), ("b", 'job="y"'), ("c", ""), ("d", "")]


# ---------------------------------------------------------------------------
# Dashboard-level lint
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("uid", UIDS)
def test_uid_title_tags_schema(uid: str) -> None:
    data = dashboard(uid)
    assert data["uid"] == uid
    assert data["title"]
    assert data["tags"] and all(isinstance(tag, str) and tag for tag in data["tags"])
    assert data["schemaVersion"] == 39
    assert "__requires" not in data
    assert data["editable"] is False  # provisioned and generated (uneditable-dashboard rule)


@pytest.mark.parametrize("uid", UIDS)
def test_import_asks_for_the_prometheus_data_source(uid: str) -> None:
    """Grafana's import dialog asks for each datasource entry of ``__inputs`` and writes
    the choice over every ``${DS_PROMETHEUS}``; the only one is $datasource's default."""
    data = dashboard(uid)
    assert next(iter(data)) == "__inputs"
    (source,) = data["__inputs"]
    assert source["name"] == DS_INPUT
    assert source["type"] == "datasource"
    assert source["pluginId"] == "prometheus"
    text = (DASHBOARDS_DIR / f"{uid}.json").read_text(encoding="utf-8")
    assert set(re.findall(r"\$\{(DS_\w+)\}", text)) == {DS_INPUT}
    placeholder = "${" + DS_INPUT + "}"
    assert variables(uid)["datasource"]["current"]["value"] == placeholder
    assert text.count(placeholder) == 2  # the default's value and text


@pytest.mark.parametrize("uid", UIDS)
def test_rows(uid: str) -> None:
    rows = [panel["title"] for panel in dashboard(uid)["panels"] if panel["type"] == "row"]
    assert rows == LAYOUT[uid][0]


@pytest.mark.parametrize("uid", UIDS)
def test_datasource_variable(uid: str) -> None:
    var = variables(uid)["datasource"]
    assert var["type"] == "datasource"
    assert var["query"] == "prometheus"
    assert var["label"] == "Data source"
    assert var["multi"] is False and var["includeAll"] is False


@pytest.mark.parametrize("uid", UIDS)
def test_template_variables(uid: str) -> None:
    found = variables(uid)
    names = LAYOUT[uid][1]
    assert list(found) == names
    for name in names[1:]:
        var = found[name]
        assert var["type"] == "query", name
        assert var["label"] == name.title(), name
        assert var["datasource"] == DS, name
        assert var["multi"] is True, name
        assert var["includeAll"] is True, name
        assert var["allValue"] == ".+", name
        assert var["refresh"] == 2, f"{name}: must refresh on time range change"


def test_main_dashboard_variable_queries() -> None:
    found = variables()
    assert variable_query(found["job"]) == "label_values(nayax_ev_build_info, job)"
    assert (
        variable_query(found["actor"])
        == 'label_values(nayax_ev_operator_machines{job=~"$job"}, actor)'
    )


@pytest.mark.parametrize("uid", UIDS)
def test_variable_queries_filter_by_job(uid: str) -> None:
    for name, var in variables(uid).items():
        if var["type"] != "query" or name == "job":
            continue
        selector, label = label_values(variable_query(var))
        assert label == name
        assert JOB in selector, name


# ---------------------------------------------------------------------------
# Panel-level lint
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("uid", UIDS)
def test_unique_panel_ids(uid: str) -> None:
    ids = [panel["id"] for panel in all_panels(uid)]
    assert all(isinstance(panel_id, int) for panel_id in ids)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("uid", UIDS)
def test_unique_ref_ids_within_panel(uid: str) -> None:
    for panel in panels(uid):
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids, f"panel {panel['title']!r} has no query"
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.parametrize("uid", UIDS)
def test_every_panel_has_title_and_description(uid: str) -> None:
    for panel in all_panels(uid):
        assert panel.get("title", "").strip(), panel["id"]
    for panel in panels(uid):
        assert panel.get("description", "").strip(), panel["title"]


@pytest.mark.parametrize("uid", UIDS)
def test_every_panel_has_a_known_unit(uid: str) -> None:
    for panel in panels(uid):
        field_config = panel["fieldConfig"]
        assert field_config["defaults"].get("unit") in KNOWN_UNITS, panel["title"]
        for override in field_config.get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in KNOWN_UNITS, panel["title"]


@pytest.mark.parametrize("uid", UIDS)
def test_every_query_uses_the_datasource_variable(uid: str) -> None:
    for panel in panels(uid):
        assert panel["datasource"] == DS, panel["title"]
    for panel, target in targets(uid):
        assert target["datasource"] == DS, (panel["title"], target["refId"])
        assert "${datasource}" not in target["expr"]


@pytest.mark.parametrize("uid", UIDS)
def test_every_selector_filters_by_job(uid: str) -> None:
    for panel, target in targets(uid):
        found = selectors(target["expr"])
        assert found, target["expr"]
        for metric, matchers in found:
            assert JOB in matchers, f"{panel['title']}: {metric}{{{matchers}}} lacks {JOB}"


@pytest.mark.parametrize("uid", UIDS)
def test_selectors_use_the_dashboard_variables(uid: str) -> None:
    for panel, target in targets(uid):
        for metric, matchers in selectors(target["expr"]):
            where = f"{panel['title']}: {metric}{{{matchers}}}"
            per_machine = ("nayax_ev_machine_", "nayax_ev:machine_")
            if metric.startswith(("nayax_ev_operator_", "nayax_ev_target_", *per_machine)):
                assert 'actor=~"$actor"' in matchers, where
            if INTERVAL_FIGURES.match(metric) or metric.startswith("nayax_ev_target_"):
                assert 'window=~"$window"' in matchers, where
            if metric.startswith(per_machine):
                assert 'machine=~"$machine"' in matchers, where
            if metric.startswith("nayax_ev_target_"):
                # machine="" (actor-wide targets) must stay visible.
                assert 'machine=~"$machine|"' in matchers, where


@pytest.mark.parametrize("uid", UIDS)
def test_ranges_use_rate_interval(uid: str) -> None:
    for panel, target in targets(uid):
        expr = target["expr"]
        # The uptime sums have one sample an hour: an hour back finds the last one.
        expr = re.sub(
            r"last_over_time\(nayax_ev:machine_communicating:(sum|count)_1h\{[^}]*\}\[1h\]\)",
            "",
            expr,
        )
        for duration in re.findall(r"\[([^\]]*)\]", expr):
            assert duration == "$__rate_interval", f"{panel['title']}: {expr}"
        for function in re.finditer(r"\b(?:rate|irate|increase)\(", expr):
            rest = expr[function.end() :]
            assert re.match(r"[\w:]+\{[^}]*\}\[\$__rate_interval\]\)", rest), expr


@pytest.mark.parametrize("uid", UIDS)
def test_counters_only_inside_rate_or_increase(uid: str) -> None:
    for panel, target in targets(uid):
        expr = target["expr"]
        for metric, _ in selectors(expr):
            if not metric.endswith("_total"):
                continue
            uses = len(re.findall(rf"\b{metric}\b", expr))
            wrapped = len(
                re.findall(rf"\b(?:rate|irate|increase)\({metric}\{{[^}}]*\}}\[[^\]]+\]\)", expr)
            )
            assert uses == wrapped, f"{panel['title']}: {metric} outside rate/increase"


@pytest.mark.parametrize("uid", UIDS)
def test_layout_fits_and_does_not_overlap(uid: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels(uid):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


# ---------------------------------------------------------------------------
# Content of the rows
# ---------------------------------------------------------------------------


def panels_by_row() -> dict[str, list[Panel]]:
    rows: dict[str, list[Panel]] = {}
    current = ""
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = list(panel.get("panels", []))
        else:
            rows[current].append(panel)
    return rows


def exprs(row_panels: list[Panel]) -> list[str]:
    return [target["expr"] for panel in row_panels for target in panel["targets"]]


def test_fleet_health_row() -> None:
    row = panels_by_row()["Fleet health"]
    stats = {panel["title"]: panel for panel in row if panel["type"] == "stat"}
    metrics = ["machines", "communicating_machines", "active_machines", "silent_machines"]
    for metric in metrics:
        assert any(f"nayax_ev_operator_{metric}{{" in expr for expr in exprs(list(stats.values())))
    silent = stats["Silent machines"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert silent[0]["color"] == "green" and silent[0]["value"] is None
    assert silent[-1]["color"] == "red" and 0 < silent[-1]["value"] <= 1
    ratio = next(panel for panel in row if panel["title"] == "Silent ratio")
    assert ratio["fieldConfig"]["defaults"]["unit"] == "percentunit"
    (expr,) = exprs([ratio])
    assert expr.index("silent_machines") < expr.index(" / ") < expr.index("operator_machines{")
    over_time = next(panel for panel in row if panel["title"] == "Silent machines over time")
    assert over_time["type"] == "timeseries"
    assert "{{actor}}" in over_time["targets"][0]["legendFormat"]


def test_charging_business_row() -> None:
    row = {panel["title"]: panel for panel in panels_by_row()["Charging business"]}
    energy = row["Energy delivered"]
    assert energy["fieldConfig"]["defaults"]["unit"] == "kwatth"
    assert all(expr.endswith("/ 3.6e6") for expr in exprs([energy]))
    sales = row["Sales per currency"]
    assert "{{currency}}" in sales["targets"][0]["legendFormat"]
    assert "currency" in sales["targets"][0]["expr"]
    duration = row["Average session duration"]
    assert duration["fieldConfig"]["defaults"]["unit"] == "s"
    (expr,) = exprs([duration])
    assert expr.index("charging_duration_seconds") < expr.index(" / ")
    assert expr.index(" / ") < expr.index("charging_sessions")
    assert "nayax_ev_operator_charging_sessions" in exprs([row["Charging sessions"]])[0]
    assert "nayax_ev_operator_transactions" in exprs([row["Transactions"]])[0]
    for panel in row.values():
        assert "{{window}}" in panel["targets"][0]["legendFormat"], panel["title"]


def test_energy_is_shown_in_kwh_everywhere() -> None:
    for panel, target in targets():
        if "energy_joules" not in target["expr"]:
            continue
        assert "/ 3.6e6" in target["expr"], panel["title"]
        units = {panel["fieldConfig"]["defaults"]["unit"]}
        for override in panel["fieldConfig"]["overrides"]:
            if override["matcher"]["options"] == f"Value #{target['refId']}":
                units = {p["value"] for p in override["properties"] if p["id"] == "unit"}
        assert units == {"kwatth"}, panel["title"]


def test_machines_row() -> None:
    row = panels_by_row()["Machines"]
    table = next(panel for panel in row if panel["type"] == "table")
    assert len(table["targets"]) >= 4
    for target in table["targets"]:
        assert target["instant"] is True and target["range"] is False
        assert target["format"] == "table"
    joined = " ".join(exprs([table]))
    for metric in (
        "energy_joules",
        "sales_amount",
        "charging_sessions",
        "charging_duration_seconds",
    ):
        assert f"nayax_ev_machine_{metric}" in joined
    transformation_ids = [step["id"] for step in table["transformations"]]
    assert transformation_ids[0] in {"merge", "joinByField"}
    named = {override["matcher"]["options"] for override in table["fieldConfig"]["overrides"]}
    assert named == {f"Value #{target['refId']}" for target in table["targets"]}
    assert any(expr.startswith("topk(10,") for expr in exprs(row))


def test_exporter_health_row() -> None:
    joined = " ".join(exprs(panels_by_row()["Exporter health"]))
    assert "nayax_ev_target_up{" in joined
    assert "time() - " in joined and "nayax_ev_target_last_success_timestamp_seconds{" in joined
    assert 'rate(nayax_ev_api_requests_total{job=~"$job", code!~"2.."}[$__rate_interval])' in (
        joined
    )
    assert 'code="429"' in joined
    assert (
        "histogram_quantile(0.95, sum by (le) (rate(nayax_ev_api_request_duration_seconds_bucket"
        '{job=~"$job"}[$__rate_interval])))'
    ) in joined


# ---------------------------------------------------------------------------
# Provisioning
# ---------------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    provisioned = yaml.safe_load(DATASOURCE_PROVISIONING.read_text(encoding="utf-8"))
    assert provisioned["apiVersion"] == 1
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"


def test_dashboard_provisioning() -> None:
    provisioned = yaml.safe_load(DASHBOARD_PROVISIONING.read_text(encoding="utf-8"))
    assert provisioned["apiVersion"] == 1
    (provider,) = provisioned["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARD_FILE.parent.name == "dashboards"


# ---------------------------------------------------------------------------
# PromQL, checked by promtool
# ---------------------------------------------------------------------------


def all_queries(rate_interval: str) -> dict[str, str]:
    """Every panel query and every variable query of both dashboards, variables
    substituted."""
    queries: dict[str, str] = {}
    for uid in UIDS:
        prefix = uid.replace("-", "_")
        for panel, target in targets(uid):
            key = f"{prefix}_panel{panel['id']}_{target['refId']}"
            queries[key] = substitute(target["expr"], rate_interval)
        for name, var in variables(uid).items():
            if var["type"] == "query":
                selector, label = label_values(variable_query(var))
                expr = substitute(f"count by ({label}) ({selector})", "")
                queries[f"{prefix}_variable_{name}"] = expr
    return queries


def test_every_query_parses(tmp_path: Path) -> None:
    queries = all_queries("1m")
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"nayax_ev_dashboard:{key}", "expr": expr}
                    for key, expr in queries.items()
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    output = run_promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(queries)} rules found" in output


# Series shaped like the exporter's metric contract, scraped as job="nayax-ev".
SCRAPE = 'job="nayax-ev", instance="exporter:9877"'
ACTOR = 'actor_id="1001", actor="Acme Charging"'
MACHINE = 'machine_id="501", machine_number="A-7", machine="Station 7"'
WINDOW = 'window="24h"'
CONTRACT_SERIES = [
    (f"nayax_ev_operator_machines{{{SCRAPE}, {ACTOR}}}", "10x30"),
    (f"nayax_ev_operator_communicating_machines{{{SCRAPE}, {ACTOR}}}", "8x30"),
    (f"nayax_ev_operator_active_machines{{{SCRAPE}, {ACTOR}}}", "7x30"),
    (f"nayax_ev_operator_silent_machines{{{SCRAPE}, {ACTOR}}}", "2x30"),
    (f"nayax_ev_operator_charging_sessions{{{SCRAPE}, {ACTOR}, {WINDOW}}}", "40x30"),
    (f"nayax_ev_operator_transactions{{{SCRAPE}, {ACTOR}, {WINDOW}}}", "42x30"),
    (f'nayax_ev_operator_sales_amount{{{SCRAPE}, {ACTOR}, {WINDOW}, currency="EUR"}}', "310x30"),
    (f"nayax_ev_operator_charging_duration_seconds{{{SCRAPE}, {ACTOR}, {WINDOW}}}", "72000x30"),
    (f"nayax_ev_operator_energy_joules{{{SCRAPE}, {ACTOR}, {WINDOW}}}", "1.8e9x30"),
    (f"nayax_ev_machine_charging_sessions{{{SCRAPE}, {ACTOR}, {MACHINE}, {WINDOW}}}", "4x30"),
    (f"nayax_ev_machine_transactions{{{SCRAPE}, {ACTOR}, {MACHINE}, {WINDOW}}}", "4x30"),
    (
        f'nayax_ev_machine_sales_amount{{{SCRAPE}, {ACTOR}, {MACHINE}, {WINDOW}, currency="EUR"}}',
        "31x30",
    ),
    (
        f"nayax_ev_machine_charging_duration_seconds{{{SCRAPE}, {ACTOR}, {MACHINE}, {WINDOW}}}",
        "7200x30",
    ),
    (f"nayax_ev_machine_energy_joules{{{SCRAPE}, {ACTOR}, {MACHINE}, {WINDOW}}}", "1.8e8x30"),
    (f"nayax_ev_machine_last_keepalive_timestamp_seconds{{{SCRAPE}, {ACTOR}, {MACHINE}}}", "0x30"),
    (f"nayax_ev_machine_mqtt_connected{{{SCRAPE}, {ACTOR}, {MACHINE}}}", "0x30"),
    (
        f"nayax_ev_machine_last_transaction_timestamp_seconds{{{SCRAPE}, {ACTOR}, {MACHINE}}}",
        "0x30",
    ),
    (
        f'nayax_ev_machine_info{{{SCRAPE}, {ACTOR}, {MACHINE}, machine_type="555007", '
        f'city="Hamburg", latitude="53.5", longitude="9.9"}}',
        "1x30",
    ),
    (f"nayax_ev_target_up{{{SCRAPE}, {ACTOR}, {WINDOW}}}", "1x30"),
    (f'nayax_ev_target_up{{{SCRAPE}, {ACTOR}, machine="Station 7", {WINDOW}}}', "1x30"),
    (f"nayax_ev_target_last_success_timestamp_seconds{{{SCRAPE}, {ACTOR}, {WINDOW}}}", "0+60x30"),
    (f'nayax_ev_api_requests_total{{{SCRAPE}, code="200"}}', "0+10x30"),
    (f'nayax_ev_api_requests_total{{{SCRAPE}, code="429"}}', "0+1x30"),
    (f'nayax_ev_api_requests_total{{{SCRAPE}, code="timeout"}}', "0+1x30"),
    (f'nayax_ev_api_request_duration_seconds_bucket{{{SCRAPE}, le="0.1"}}', "0+5x30"),
    (f'nayax_ev_api_request_duration_seconds_bucket{{{SCRAPE}, le="1"}}', "0+11x30"),
    (f'nayax_ev_api_request_duration_seconds_bucket{{{SCRAPE}, le="+Inf"}}', "0+12x30"),
    (f"nayax_ev_api_request_duration_seconds_sum{{{SCRAPE}}}", "0+3x30"),
    (f"nayax_ev_api_request_duration_seconds_count{{{SCRAPE}}}", "0+12x30"),
    (f'nayax_ev_poll_errors_total{{{SCRAPE}, actor_id="1001", reason="timeout"}}', "0+1x30"),
    (f'nayax_ev_build_info{{{SCRAPE}, version="0.1.0", python_version="3.11.7"}}', "1x30"),
    (f"nayax_ev_config_last_reload_successful{{{SCRAPE}}}", "1x30"),
    (f"nayax_ev_config_last_reload_success_timestamp_seconds{{{SCRAPE}}}", "60x30"),
    (f'nayax_ev_poll_interval_seconds{{{SCRAPE}, kind="ev_dashboard"}}', "60x30"),
    (f'nayax_ev_poll_round_duration_seconds{{{SCRAPE}, kind="ev_dashboard"}}', "61x30"),
    (f"up{{{SCRAPE}}}", "1x30"),
]
# The uptime recording rules' series (no instance label): one charger, in outage
# now, 15 of the last hour's 60 minutes communicating, 96.43 % over 30 days.
CHARGER = 'job="nayax-ev", actor_id="1001", actor="Acme Charging", ' + MACHINE
UPTIME_SERIES = [
    (f"nayax_ev:machine_communicating{{{CHARGER}}}", "0x30"),
    (f"nayax_ev:machine_communicating:sum_1h{{{CHARGER}}}", "15x30"),
    (f"nayax_ev:machine_communicating:count_1h{{{CHARGER}}}", "60x30"),
    (f"nayax_ev:machine_communicating:ratio_1d{{{CHARGER}}}", "0.9x30"),
    (f"nayax_ev:machine_communicating:sum_30d{{{CHARGER}}}", "9720x30"),
    (f"nayax_ev:machine_communicating:count_30d{{{CHARGER}}}", "10080x30"),
    (f"nayax_ev:machine_communicating:ratio_30d{{{CHARGER}}}", "0.9642857142857143x30"),
]


def expr_of(title: str, uid: str = "nayax-ev") -> str:
    (target,) = next(panel for panel in panels(uid) if panel["title"] == title)["targets"]
    return substitute(str(target["expr"]), "5m")


def expect(expr: str, labels: str, value: float) -> dict[str, Any]:
    return {"expr": expr, "eval_time": "20m", "exp_samples": [{"labels": labels, "value": value}]}


def value_checks() -> list[dict[str, Any]]:
    """Queries whose values on the contract series are known."""
    return [
        {
            "expr": expr_of("Energy delivered"),
            "eval_time": "20m",
            "exp_samples": [{"labels": '{window="24h"}', "value": 500}],
        },
        {
            "expr": expr_of("Average session duration"),
            "eval_time": "20m",
            "exp_samples": [{"labels": '{window="24h"}', "value": 1800}],
        },
        {
            "expr": expr_of("Silent ratio"),
            "eval_time": "20m",
            "exp_samples": [{"labels": '{actor_id="1001", actor="Acme Charging"}', "value": 0.2}],
        },
        expect(expr_of("Fleet uptime, 30 days", UPTIME), "{}", 0.9642857142857143),
        expect(expr_of("Chargers below target", UPTIME), "{}", 1),
        expect(expr_of("Chargers not yet judged", UPTIME), "{}", 0),
        expect(expr_of("Chargers in outage now", UPTIME), "{}", 1),
        expect(expr_of("Outage minutes per hour", UPTIME), '{actor="Acme Charging"}', 45),
        expect(
            expr_of("Operator uptime per hour", UPTIME),
            '{actor="Acme Charging"}',
            0.25,
        ),
    ]


def test_every_query_returns_data_on_contract_series(tmp_path: Path) -> None:
    """Each query, as an alert ``count(query) > 0``, must fire on contract-shaped data.

    This catches label names that do not match the metric contract, which
    parsing alone would not. Three queries are also checked for their values.
    """
    queries = all_queries("5m")
    alert_names = {key: "Query_" + key for key in queries}
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"alert": alert_names[key], "expr": f"count({expr}) > 0"}
                    for key, expr in queries.items()
                ],
            }
        ]
    }
    rules_path = tmp_path / "dashboard_queries.yml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    tests = {
        "rule_files": [rules_path.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": series, "values": values}
                    for series, values in CONTRACT_SERIES + UPTIME_SERIES
                ],
                "alert_rule_test": [
                    {"alertname": name, "eval_time": "20m", "exp_alerts": [{"exp_labels": {}}]}
                    for name in alert_names.values()
                ],
                "promql_expr_test": value_checks(),
            }
        ],
    }
    tests_path = tmp_path / "dashboard_queries_test.yml"
    tests_path.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    output = run_promtool("test", "rules", str(tests_path))
    assert "SUCCESS" in output


def test_machine_status_row() -> None:
    row = {panel["title"]: panel for panel in panels_by_row()["Machine status"]}
    table = row["Silent machines"]
    assert table["type"] == "table"
    assert table["options"]["sortBy"] == [{"displayName": "Since keep-alive", "desc": True}]
    queries = " ".join(exprs([table]))
    for metric in ("last_keepalive_timestamp_seconds", "mqtt_connected", "last_transaction"):
        assert f"nayax_ev_machine_{metric}" in queries
    assert "city" in queries and "nayax_ev_machine_info" in queries
    geomap = row["Chargers on the map"]
    assert geomap["type"] == "geomap"
    (layer,) = geomap["options"]["layers"]
    assert layer["location"] == {"mode": "coords", "latitude": "latitude", "longitude": "longitude"}
    assert layer["config"]["style"]["color"]["field"] == "Value #B"  # time since keep-alive
    assert "latitude, longitude" in exprs([geomap])[0]


# ---------------------------------------------------------------------------
# Charger uptime
# ---------------------------------------------------------------------------


def uptime_alert_numbers() -> tuple[float, int]:
    """The target and the minimum of known minutes in NayaxEVChargerUptimeAtRisk."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    (expr,) = [
        rule["expr"]
        for group in groups
        for rule in group["rules"]
        if rule.get("alert") == "NayaxEVChargerUptimeAtRisk"
    ]
    target = re.search(r"ratio_30d < ([\d.]+)", expr)
    minimum = re.search(r"count_30d >= (\d+)", expr)
    assert target and minimum, expr
    return float(target.group(1)), int(minimum.group(1))


def panel_by_title(uid: str, title: str) -> Panel:
    return next(panel for panel in panels(uid) if panel["title"] == title)


def test_uptime_dashboard_uses_the_alerts_target_and_minimum() -> None:
    target, minimum = uptime_alert_numbers()
    below = expr_of("Chargers below target", UPTIME)
    assert f"< {target} and" in below and f">= {minimum})" in below
    assert f"< {minimum})" in expr_of("Chargers not yet judged", UPTIME)
    fleet = panel_by_title(UPTIME, "Fleet uptime, 30 days")
    assert fleet["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == target
    table = panel_by_title(UPTIME, "Uptime per charger")
    for override in table["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "thresholds":
                assert prop["value"]["steps"][-1] == {"color": "green", "value": target}


def test_uptime_table() -> None:
    table = panel_by_title(UPTIME, "Uptime per charger")
    assert table["type"] == "table"
    assert table["options"]["sortBy"] == [{"displayName": "30-day uptime", "desc": False}]
    for target in table["targets"]:
        assert target["instant"] is True and target["format"] == "table"
    names = {
        override["matcher"]["options"]: next(
            prop["value"] for prop in override["properties"] if prop["id"] == "displayName"
        )
        for override in table["fieldConfig"]["overrides"]
    }
    assert names == {
        "Value #A": "30-day uptime",
        "Value #B": "24-hour uptime",
        "Value #C": "Outage (30 days)",
        "Value #D": "Known (30 days)",
    }
    joined = " ".join(target["expr"] for target in table["targets"])
    assert "count_30d" in joined and "sum_30d" in joined and "nayax_ev_machine_info" in joined


def test_uptime_panels_read_recorded_series_only() -> None:
    """No panel reads the keep-alive itself or a long range of the per-minute signal:
    at 10,000 chargers 30 days of it are 432 million samples."""
    for panel, target in targets(UPTIME):
        expr = target["expr"]
        assert "keepalive" not in expr, panel["title"]
        for metric, duration in re.findall(r"([\w:]+)\{[^}]*\}\[([^\]]+)\]", expr):
            assert metric.endswith("_1h") and duration == "1h", (panel["title"], expr)


def test_provisioning_says_which_data_source_it_installs() -> None:
    comment = DATASOURCE_PROVISIONING.read_text(encoding="utf-8").split("apiVersion")[0]
    assert "http://prometheus:9090" in comment
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Dashboard and alerts") :]
    section = section[: section.index("\n## ", 1)]
    assert "http://prometheus:9090" in section
    assert "nayax-ev-uptime" in section
