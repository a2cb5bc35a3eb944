"""Prometheus alerting and recording rules, their promtool unit tests, the runbook,
README's alerts table and example configs.

promtool comes with Debian's ``prometheus`` package. Without it these tests
skip locally, but fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import run_promtool

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
README = ROOT / "README.md"
RUNBOOK_URL = "https://github.com/nayax-ev-exporter/nayax-ev-exporter/blob/main/docs/runbook.md#"

# The alerts the project promises: name -> (severity, for).
REQUIRED_ALERTS = {
    "NayaxEVMachinesSilent": ("warning", "15m"),
    "NayaxEVSilentRatioHigh": ("critical", "15m"),
    "NayaxEVNoCommunicatingMachines": ("critical", "10m"),
    "NayaxEVExporterDown": ("critical", "5m"),
    "NayaxEVTargetDown": ("warning", "15m"),
    "NayaxEVDataStale": ("warning", "5m"),
    "NayaxEVApiAuthFailing": ("critical", "5m"),
    "NayaxEVApiRateLimited": ("warning", "15m"),
    "NayaxEVConfigReloadFailed": ("warning", "5m"),
    "NayaxEVMachineSilent": ("critical", "5m"),
    "NayaxEVMachineDisconnected": ("warning", "30m"),
    "NayaxEVAccessTokenRenewalFailing": ("critical", "5m"),
    "NayaxEVChargerUptimeAtRisk": ("warning", None),
}
# One alert per machine: the summary itself names the machine, its operator and city.
PER_MACHINE_ALERTS = {
    "NayaxEVMachineSilent",
    "NayaxEVMachineDisconnected",
    "NayaxEVChargerUptimeAtRisk",
}
GROUPS = ["nayax-ev", "nayax-ev-uptime"]
# The uptime recording rules, in evaluation order (later ones read earlier ones).
UPTIME_RECORDS = [
    "nayax_ev:machine_communicating",
    "nayax_ev:machine_communicating:sum_1h",
    "nayax_ev:machine_communicating:count_1h",
    "nayax_ev:machine_communicating:ratio_1d",
    "nayax_ev:machine_communicating:sum_30d",
    "nayax_ev:machine_communicating:count_30d",
    "nayax_ev:machine_communicating:ratio_30d",
]
# The labels that identify a charger in the uptime series (no instance: a charger
# that moves to another shard keeps its history).
CHARGER_LABELS = "job, actor_id, actor, machine_id, machine_number, machine"
SEVERITIES = {"critical", "warning", "info"}
# Alerts whose value is a constant (up/0/1), so the description does not print it.
VALUE_NOT_INFORMATIVE = {
    "NayaxEVExporterDown",
    "NayaxEVTargetDown",
    "NayaxEVConfigReloadFailed",
}
# Metrics that carry the operator's name in the `actor` label.
ACTOR_METRICS = re.compile(r"nayax_ev_(operator|machine|target)_\w+")


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def all_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in all_rules() if "alert" in rule]


def group(name: str) -> dict[str, Any]:
    groups: list[dict[str, Any]] = load_yaml(ALERTS)["groups"]
    (found,) = [g for g in groups if g["name"] == name]
    return found


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Level-2 sections of the runbook, by anchor."""
    text = RUNBOOK.read_text(encoding="utf-8")
    parts = re.split(r"^## +(.+)$", text, flags=re.MULTILINE)
    return {github_anchor(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


ALERT_NAMES = [rule["alert"] for rule in alert_rules()]


# ---------------------------------------------------------------------------
# promtool
# ---------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    output = run_promtool("check", "rules", "prometheus/alerts.yml")
    assert f"SUCCESS: {len(all_rules())} rules found" in output
    assert "WARNING" not in output.upper()


def test_promtool_unit_tests_pass() -> None:
    output = run_promtool("test", "rules", "prometheus/alerts_test.yml")
    assert "SUCCESS" in output
    assert "FAILED" not in output


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_check_config(config: str) -> None:
    output = run_promtool("check", "config", f"prometheus/{config}")
    assert "SUCCESS: 1 rule files found" in output


# ---------------------------------------------------------------------------
# The rules themselves
# ---------------------------------------------------------------------------


def test_rule_group_and_required_alerts() -> None:
    groups = load_yaml(ALERTS)["groups"]
    assert [group["name"] for group in groups] == GROUPS
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert len(rules) == len(ALERT_NAMES), "duplicate alert names"
    for name, (severity, for_) in REQUIRED_ALERTS.items():
        assert name in rules, f"{name} is missing"
        assert rules[name]["labels"]["severity"] == severity, name
        assert rules[name].get("for") == for_, name


def test_required_alert_expressions() -> None:
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert 'up{job="nayax-ev"} == 0' in rules["NayaxEVExporterDown"]
    assert 'absent(up{job="nayax-ev"})' in rules["NayaxEVExporterDown"]
    assert "nayax_ev_target_up == 0" in rules["NayaxEVTargetDown"]
    assert "> 900" in rules["NayaxEVDataStale"]
    assert "nayax_ev_target_last_success_timestamp_seconds" in rules["NayaxEVDataStale"]
    assert 'reason="auth"' in rules["NayaxEVApiAuthFailing"]
    assert 'code="429"' in rules["NayaxEVApiRateLimited"]
    assert "> 0.2" in rules["NayaxEVSilentRatioHigh"]
    assert "nayax_ev_config_last_reload_successful == 0" in rules["NayaxEVConfigReloadFailed"]
    assert "< time() - 3600" in rules["NayaxEVMachineSilent"]
    assert "nayax_ev_machine_mqtt_connected == 0" in rules["NayaxEVMachineDisconnected"]
    uptime = rules["NayaxEVChargerUptimeAtRisk"]
    assert "nayax_ev:machine_communicating:ratio_30d < 0.97" in uptime
    assert "nayax_ev:machine_communicating:count_30d >= 10080" in uptime


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_labels_and_annotations(name: str) -> None:
    rule = next(rule for rule in alert_rules() if rule["alert"] == name)
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description", "runbook_url"}

    summary = annotations["summary"]
    if name in PER_MACHINE_ALERTS:
        for label in ("$labels.machine ", "$labels.actor ", "$labels.city"):
            assert label in summary, f"{name}: summary must name {label}"
    else:
        assert "{{" not in summary, "summary must be static"
    assert summary.endswith(".") and summary.count(". ") == 0, "summary: one sentence"

    description = annotations["description"]
    assert "{{" in description, "description must be templated"
    if ACTOR_METRICS.search(rule["expr"]):
        assert "$labels.actor" in description, "description must name the operator"
    elif "actor_id" in rule["expr"] or "poll_errors" in rule["expr"]:
        assert "$labels.actor_id" in description
    if name not in VALUE_NOT_INFORMATIVE:
        assert "$value" in description, "description must show the value"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_runbook_url_points_to_existing_heading(name: str) -> None:
    rule = next(rule for rule in alert_rules() if rule["alert"] == name)
    url = rule["annotations"]["runbook_url"]
    assert url == RUNBOOK_URL + name.lower()
    sections = runbook_sections()
    assert name.lower() in sections, f"docs/runbook.md has no '## {name}' heading"
    section = sections[name.lower()]
    for part in ("What it means", "Likely causes", "What to do"):
        assert part in section, f"runbook section {name} lacks '{part}'"


def test_runbook_has_no_orphan_sections() -> None:
    anchors = {name.lower() for name in ALERT_NAMES}
    assert set(runbook_sections()) == anchors


def test_thresholds_and_for_are_documented() -> None:
    """Every alert rule is preceded by a comment giving its threshold and for:."""
    lines = ALERTS.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"\s*- alert: (\w+)", line)
        if not match:
            continue
        comment: list[str] = []
        above = index - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            comment.insert(0, lines[above])
            above -= 1
        text = " ".join(comment)
        assert "Threshold" in text, f"{match.group(1)}: no threshold comment"
        assert "for:" in text, f"{match.group(1)}: no for: comment"


# ---------------------------------------------------------------------------
# Uptime recording rules
# ---------------------------------------------------------------------------


def uptime_records() -> dict[str, str]:
    return {
        rule["record"]: rule["expr"]
        for rule in group("nayax-ev-uptime")["rules"]
        if "record" in rule
    }


def test_uptime_records_in_order() -> None:
    """Rules of a group run in order: each reads only series recorded before it."""
    assert list(uptime_records()) == UPTIME_RECORDS
    assert [rule.get("alert") for rule in group("nayax-ev-uptime")["rules"]][-1] == (
        "NayaxEVChargerUptimeAtRisk"
    )


def test_uptime_group_runs_every_minute() -> None:
    """Counts of samples are counts of minutes only at a pinned 1m interval."""
    assert group("nayax-ev-uptime")["interval"] == "1m"


def test_communicating_threshold_is_one_number_in_one_rule() -> None:
    records = uptime_records()
    signal = records["nayax_ev:machine_communicating"]
    assert "time() - nayax_ev_machine_last_keepalive_timestamp_seconds <= bool 900" in signal
    assert f"max by ({CHARGER_LABELS})" in signal
    # Every other uptime rule builds on the signal, never on the keep-alive itself.
    for name, expr in records.items():
        if name != "nayax_ev:machine_communicating":
            assert "keepalive" not in expr, name
            assert "900" not in expr, name
    assert ALERTS.read_text(encoding="utf-8").count("<= bool 900") == 1


def test_uptime_ratios_are_sums_over_hourly_sums() -> None:
    records = uptime_records()
    gate = "and on () (minute() == 0)"
    assert records["nayax_ev:machine_communicating:sum_1h"] == (
        f"sum_over_time(nayax_ev:machine_communicating[59m30s]) {gate}"
    )
    assert records["nayax_ev:machine_communicating:count_1h"] == (
        f"count_over_time(nayax_ev:machine_communicating[59m30s]) {gate}"
    )
    for kind in ("sum", "count"):
        assert records[f"nayax_ev:machine_communicating:{kind}_30d"] == (
            f"sum_over_time(nayax_ev:machine_communicating:{kind}_1h[29d23h59m30s])"
        )
    daily = records["nayax_ev:machine_communicating:ratio_1d"]
    assert "sum_1h[23h59m30s])" in daily and "count_1h[23h59m30s])" in daily
    # No range over the raw per-minute signal longer than an hour: that is the cost
    # the hourly sums avoid (43,200 samples per charger for 30 days).
    for name, expr in records.items():
        for metric, duration in re.findall(r"([\w:]+)\[([^\]]+)\]", expr):
            if metric == "nayax_ev:machine_communicating":
                assert duration == "59m30s", name


def test_uptime_target_and_minimum_appear_once() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    assert text.count("< 0.97") == 1
    assert text.count(">= 10080") == 1


# ---------------------------------------------------------------------------
# README's alerts table
# ---------------------------------------------------------------------------


def readme_alert_rows() -> dict[str, list[str]]:
    """Alert name -> cells of its row in README's "Dashboard and alerts" table."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Dashboard and alerts") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = re.match(r"\| `(NayaxEV\w+)` \|(.*)\|$", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} listed twice"
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_readme_lists_every_alert_and_only_those() -> None:
    assert set(readme_alert_rows()) == set(ALERT_NAMES)


def test_readme_alert_rows_say_scope_and_severity() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name, (scope, _fires_when, severity) in readme_alert_rows().items():
        assert severity == rules[name]["labels"]["severity"], name
        assert scope in {"per charger", "per operator", "per poll target", "per exporter"}
        assert (scope == "per charger") is (name in PER_MACHINE_ALERTS), (name, scope)


# ---------------------------------------------------------------------------
# The unit tests cover every alert
# ---------------------------------------------------------------------------


def alert_test_cases() -> list[dict[str, Any]]:
    tests = load_yaml(ALERTS_TEST)
    assert tests["rule_files"] == ["alerts.yml"]
    return [case for group in tests["tests"] for case in group.get("alert_rule_test", [])]


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_firing_and_a_quiet_case(name: str) -> None:
    cases = [case for case in alert_test_cases() if case["alertname"] == name]
    firing = [case for case in cases if case.get("exp_alerts")]
    quiet = [case for case in cases if not case.get("exp_alerts")]
    assert firing, f"{name}: no test case shows it firing"
    assert quiet, f"{name}: no test case shows it quiet"
    for case in firing:
        for alert in case["exp_alerts"]:
            assert "severity" in alert["exp_labels"]
            assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}


def test_unit_tests_only_name_existing_alerts() -> None:
    names = {case["alertname"] for case in alert_test_cases()}
    assert names <= set(ALERT_NAMES), names - set(ALERT_NAMES)


# ---------------------------------------------------------------------------
# Example Prometheus configs
# ---------------------------------------------------------------------------


def test_prometheus_example_config() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    alertmanagers = config["alerting"]["alertmanagers"]
    assert alertmanagers[0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "nayax-ev"
    assert job["scrape_interval"] == "30s"
    assert job["static_configs"] == [{"targets": ["localhost:9877"]}]


def test_compose_config_differs_only_in_target() -> None:
    plain = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    compose = load_yaml(PROMETHEUS_DIR / "prometheus.compose.yml")
    assert compose["scrape_configs"][0]["static_configs"] == [{"targets": ["exporter:9877"]}]
    compose["scrape_configs"][0]["static_configs"] = plain["scrape_configs"][0]["static_configs"]
    assert compose == plain
