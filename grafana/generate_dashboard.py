#!/usr/bin/env python3
"""Generate the Grafana dashboard for nayax-ev-exporter.

Usage::

    python grafana/generate_dashboard.py > grafana/dashboards/nayax-ev.json

The output is deterministic (same input, byte-identical JSON), and
``tests/test_dashboard.py`` regenerates it and compares it with the committed file.
Edit this script, never the JSON.

This script uses the standard library only. The grafana-foundation-sdk is on PyPI,
but it is not used here: it would be a new dependency in pyproject.toml and CI
just to write one JSON file. It is also an alpha whose releases are one build
per Grafana version, told apart by version epochs ("1769699998!10.1.0"). And
plain dicts are exactly the JSON model that the lint tests check.
"""

from __future__ import annotations

import json
import sys
from typing import Any

JSON = dict[str, Any]

DASHBOARD_UID = "nayax-ev"
DATASOURCE_UID = "prometheus"  # grafana/provisioning/datasources/prometheus.yaml
DS: JSON = {"type": "prometheus", "uid": "${datasource}"}
RUNBOOK = "https://github.com/nayax-ev-exporter/nayax-ev-exporter/blob/main/docs/runbook.md"
J_PER_KWH = "3.6e6"  # 1 kWh = 3.6e6 J

# ---------------------------------------------------------------------------
# Label selectors. Every selector carries job=~"$job" (dashboard-linter's
# target-job-rule); the others narrow by the dashboard's variables.
# ---------------------------------------------------------------------------
JOB = 'job=~"$job"'
ACTOR = 'actor=~"$actor"'
WINDOW = 'window=~"$window"'
MACHINE = 'machine=~"$machine"'
# Self-observation series of actor-wide targets have machine="" (no label):
# with "|" they stay visible whatever machines are selected.
MACHINE_OR_ACTOR_WIDE = 'machine=~"$machine|"'


def sel(*matchers: str) -> str:
    """Return a label selector ``{job=~"$job", ...}``."""
    return "{" + ", ".join((JOB, *matchers)) + "}"


OPERATOR = sel(ACTOR)
OPERATOR_WINDOW = sel(ACTOR, WINDOW)
MACHINE_WINDOW = sel(ACTOR, MACHINE, WINDOW)
TARGET = sel(ACTOR, MACHINE_OR_ACTOR_WIDE, WINDOW)
EXPORTER = sel()
NON_2XX = sel('code!~"2.."')
HTTP_429 = sel('code="429"')


class Ids:
    """Hands out panel ids in layout order, so ids are unique and stable."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def target(
    ref_id: str,
    expr: str,
    legend: str = "__auto",
    *,
    instant: bool = False,
    table: bool = False,
) -> JSON:
    t: JSON = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref_id,
    }
    if table:
        t["format"] = "table"
    return t


def thresholds(*steps: tuple[str, float | None]) -> JSON:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps],
    }


GREEN_ONLY = thresholds(("green", None))


def panel(
    ids: Ids,
    kind: str,
    title: str,
    description: str,
    unit: str,
    *,
    grid: tuple[int, int, int, int],
    targets: list[JSON],
    defaults: JSON | None = None,
    options: JSON | None = None,
    overrides: list[JSON] | None = None,
    transformations: list[JSON] | None = None,
) -> JSON:
    x, y, w, h = grid
    field_defaults: JSON = {"unit": unit, "thresholds": GREEN_ONLY}
    field_defaults.update(defaults or {})
    p: JSON = {
        "id": ids(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": targets,
    }
    if transformations:
        p["transformations"] = transformations
    return p


def row(ids: Ids, title: str, y: int) -> JSON:
    return {
        "id": ids(),
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def stat_options(text_mode: str = "value", color_mode: str = "background") -> JSON:
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "center",
        "orientation": "auto",
        "textMode": text_mode,
        "wideLayout": True,
        "showPercentChange": False,
    }


def timeseries_options(legend_calcs: list[str] | None = None) -> JSON:
    return {
        "legend": {
            "calcs": legend_calcs or [],
            "displayMode": "table" if legend_calcs else "list",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def timeseries_custom(threshold_style: str = "off", fill: int = 10) -> JSON:
    return {
        "custom": {
            "drawStyle": "line",
            "lineInterpolation": "stepAfter",
            "lineWidth": 1,
            "fillOpacity": fill,
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": threshold_style},
        },
        "color": {"mode": "palette-classic"},
    }


def value_mapping(*entries: tuple[int, str, str]) -> list[JSON]:
    return [
        {
            "type": "value",
            "options": {
                str(value): {"text": text, "color": color, "index": index}
                for index, (value, text, color) in enumerate(entries)
            },
        }
    ]


TABLE_DEFAULTS: JSON = {"custom": {"align": "auto", "filterable": True}}


def table_options(*, sort_by: str) -> JSON:
    """A table panel's options: header, small cells, no footer, sorted by one
    column, largest first."""
    return {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "fields": "", "countRows": False},
        "sortBy": [{"displayName": sort_by, "desc": True}],
    }


def by_name(name: str, **props: Any) -> JSON:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in props.items()],
    }


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------


def fleet_health(ids: Ids, y: int) -> list[JSON]:
    def total(metric: str) -> str:
        # max by (actor_id) de-duplicates HA pairs of exporters polling one actor.
        return f"sum(max by (actor_id) ({metric}{OPERATOR}))"

    tiles = [
        (
            "Machines",
            "nayax_ev_operator_machines",
            "Machines registered under the selected operators in Nayax.",
            GREEN_ONLY,
        ),
        (
            "Communicating machines",
            "nayax_ev_operator_communicating_machines",
            "Machines that Nayax currently reports as communicating with its back office.",
            GREEN_ONLY,
        ),
        (
            "Active machines",
            "nayax_ev_operator_active_machines",
            "Machines that Nayax reports as active.",
            GREEN_ONLY,
        ),
        (
            "Silent machines",
            "nayax_ev_operator_silent_machines",
            "Machines that Nayax reports as silent (not communicating for its silence "
            "period). Red when any machine is silent; see the NayaxEVMachinesSilent alert.",
            thresholds(("green", None), ("red", 1)),
        ),
    ]
    panels = [row(ids, "Fleet health", y)]
    for i, (title, metric, description, steps) in enumerate(tiles):
        panels.append(
            panel(
                ids,
                "stat",
                title,
                description,
                "none",
                grid=(6 * i, y + 1, 6, 4),
                targets=[target("A", total(metric), title, instant=True)],
                defaults={"thresholds": steps, "color": {"mode": "thresholds"}, "decimals": 0},
                options=stat_options(),
            )
        )
    by_actor = "max by (actor_id, actor)"
    panels.append(
        panel(
            ids,
            "timeseries",
            "Silent machines over time",
            "Silent machines per operator, as reported by Nayax.",
            "none",
            grid=(0, y + 5, 12, 8),
            targets=[
                target(
                    "A",
                    f"{by_actor} (nayax_ev_operator_silent_machines{OPERATOR})",
                    "{{actor}}",
                )
            ],
            defaults={**timeseries_custom(), "min": 0, "decimals": 0},
            options=timeseries_options(["lastNotNull", "max"]),
        )
    )
    panels.append(
        panel(
            ids,
            "timeseries",
            "Silent ratio",
            "Silent machines divided by all machines, per operator. The dashed line is the "
            "NayaxEVSilentRatioHigh alert threshold (20 %). Operators without machines "
            "are left out.",
            "percentunit",
            grid=(12, y + 5, 12, 8),
            targets=[
                target(
                    "A",
                    f"{by_actor} (nayax_ev_operator_silent_machines{OPERATOR})"
                    f" / {by_actor} (nayax_ev_operator_machines{OPERATOR} > 0)",
                    "{{actor}}",
                )
            ],
            defaults={
                **timeseries_custom("dashed"),
                "min": 0,
                "max": 1,
                "thresholds": thresholds(("green", None), ("red", 0.2)),
            },
            options=timeseries_options(["lastNotNull", "max"]),
        )
    )
    return panels


def charging_business(ids: Ids, y: int) -> list[JSON]:
    def per_window(metric: str, extra: str = "") -> str:
        return (
            f"sum by (window{extra}) (max by (actor_id, window{extra}) ({metric}{OPERATOR_WINDOW}))"
        )

    note = (
        " Figures are the API's interval totals for each configured window (e.g. the last "
        "24 h), summed over the selected operators."
    )
    custom = {**timeseries_custom(), "min": 0}
    legend = timeseries_options(["lastNotNull", "max"])
    return [
        row(ids, "Charging business", y),
        panel(
            ids,
            "timeseries",
            "Energy delivered",
            "Energy delivered by the selected operators' chargers, in kWh "
            "(the exporter reports joules; 1 kWh = 3.6 MJ)." + note,
            "kwatth",
            grid=(0, y + 1, 12, 8),
            targets=[
                target(
                    "A",
                    f"{per_window('nayax_ev_operator_energy_joules')} / {J_PER_KWH}",
                    "{{window}}",
                )
            ],
            defaults={**custom, "decimals": 1},
            options=legend,
        ),
        panel(
            ids,
            "timeseries",
            "Sales per currency",
            "Sales amount in each currency's own units; the legend names the currency. "
            "Amounts in different currencies are never added up." + note,
            "short",
            grid=(12, y + 1, 12, 8),
            targets=[
                target(
                    "A",
                    per_window("nayax_ev_operator_sales_amount", ", currency"),
                    "{{currency}} · {{window}}",
                )
            ],
            defaults={**custom, "decimals": 2},
            options=legend,
        ),
        panel(
            ids,
            "timeseries",
            "Charging sessions",
            "Number of charging sessions." + note,
            "none",
            grid=(0, y + 9, 8, 8),
            targets=[target("A", per_window("nayax_ev_operator_charging_sessions"), "{{window}}")],
            defaults={**custom, "decimals": 0},
            options=legend,
        ),
        panel(
            ids,
            "timeseries",
            "Transactions",
            "Number of payment transactions." + note,
            "none",
            grid=(8, y + 9, 8, 8),
            targets=[target("A", per_window("nayax_ev_operator_transactions"), "{{window}}")],
            defaults={**custom, "decimals": 0},
            options=legend,
        ),
        panel(
            ids,
            "timeseries",
            "Average session duration",
            "Total charging duration divided by the number of charging sessions. "
            "Windows without sessions are left out." + note,
            "s",
            grid=(16, y + 9, 8, 8),
            targets=[
                target(
                    "A",
                    f"{per_window('nayax_ev_operator_charging_duration_seconds')}"
                    f" / ({per_window('nayax_ev_operator_charging_sessions')} > 0)",
                    "{{window}}",
                )
            ],
            defaults=custom,
            options=legend,
        ),
    ]


def machines(ids: Ids, y: int) -> list[JSON]:
    keys = "actor_id, actor, machine_id, machine_number, machine, window"

    def latest(metric: str, extra: str = "") -> str:
        return f"max by ({keys}{extra}) ({metric}{MACHINE_WINDOW})"

    table_targets = [
        target(
            "A",
            f"{latest('nayax_ev_machine_energy_joules')} / {J_PER_KWH}",
            instant=True,
            table=True,
        ),
        target(
            "B",
            latest("nayax_ev_machine_sales_amount", ", currency"),
            instant=True,
            table=True,
        ),
        target("C", latest("nayax_ev_machine_charging_sessions"), instant=True, table=True),
        target("D", latest("nayax_ev_machine_charging_duration_seconds"), instant=True, table=True),
    ]
    order = [
        "actor",
        "machine",
        "machine_number",
        "machine_id",
        "window",
        "Value #A",
        "Value #B",
        "currency",
        "Value #C",
        "Value #D",
    ]
    return [
        row(ids, "Machines", y),
        panel(
            ids,
            "table",
            "Machines",
            "Latest interval figures per machine and window: energy (kWh), sales (in the "
            "currency shown), charging sessions and total charging time. Only machines "
            "that the exporter is configured to poll individually appear here.",
            "none",
            grid=(0, y + 1, 24, 10),
            targets=table_targets,
            defaults=TABLE_DEFAULTS,
            options=table_options(sort_by="Energy"),
            overrides=[
                by_name("Value #A", displayName="Energy", unit="kwatth", decimals=1),
                by_name("Value #B", displayName="Sales", unit="short", decimals=2),
                by_name("Value #C", displayName="Sessions", unit="none", decimals=0),
                by_name("Value #D", displayName="Charging time", unit="s"),
            ],
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "actor_id": True},
                        "indexByName": {name: index for index, name in enumerate(order)},
                        "renameByName": {
                            "actor": "Operator",
                            "machine": "Machine",
                            "machine_number": "Machine number",
                            "machine_id": "Machine ID",
                            "window": "Window",
                            "currency": "Currency",
                        },
                    },
                },
            ],
        ),
        panel(
            ids,
            "bargauge",
            "Top 10 machines by energy",
            "The ten machines that delivered the most energy (kWh) in each selected window.",
            "kwatth",
            grid=(0, y + 11, 24, 8),
            targets=[
                target(
                    "A",
                    f"topk(10, max by (actor_id, actor, machine_id, machine, window) "
                    f"(nayax_ev_machine_energy_joules{MACHINE_WINDOW}) / {J_PER_KWH})",
                    "{{machine}} ({{actor}}, {{window}})",
                    instant=True,
                )
            ],
            defaults={"min": 0, "decimals": 1, "color": {"mode": "continuous-GrYlRd"}},
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "displayMode": "gradient",
                "orientation": "horizontal",
                "showUnfilled": True,
                "valueMode": "color",
                "namePlacement": "auto",
                "sizing": "auto",
                "minVizHeight": 16,
                "minVizWidth": 8,
                "maxVizHeight": 300,
            },
        ),
    ]


def _machine_table_targets(status: str) -> list[JSON]:
    keys = "actor_id, actor, machine_id, machine"

    def latest(metric: str, extra: str = "") -> str:
        return f"max by ({keys}{extra}) ({metric}{status})"

    return [
        target(
            "A",
            f"time() - {latest('nayax_ev_machine_last_keepalive_timestamp_seconds')}",
            instant=True,
            table=True,
        ),
        target("B", latest("nayax_ev_machine_mqtt_connected"), instant=True, table=True),
        target(
            "C",
            f"{latest('nayax_ev_machine_last_transaction_timestamp_seconds')} * 1000",
            instant=True,
            table=True,
        ),
        target("D", latest("nayax_ev_machine_info", ", city"), instant=True, table=True),
    ]


def _silent_table(ids: Ids, y: int, status: str) -> JSON:
    order = ["machine", "actor", "city", "Value #A", "Value #B", "Value #C"]
    silent_colors = thresholds(("green", None), ("orange", 900), ("red", 3600))
    return panel(
        ids,
        "table",
        "Silent machines",
        "Every machine with a status, longest silence first: time since its last "
        "keep-alive (red after 1 h, the NayaxEVMachineSilent threshold), its MQTT "
        "connection and its last transaction (GET /v1/machines/{id}/status).",
        "none",
        grid=(0, y, 14, 12),
        targets=_machine_table_targets(status),
        defaults=TABLE_DEFAULTS,
        options=table_options(sort_by="Since keep-alive"),
        overrides=[
            by_name(
                "Value #A",
                displayName="Since keep-alive",
                unit="s",
                thresholds=silent_colors,
                custom={"cellOptions": {"type": "color-background"}},
            ),
            by_name(
                "Value #B",
                displayName="MQTT",
                unit="none",
                mappings=value_mapping((0, "disconnected", "red"), (1, "connected", "green")),
            ),
            by_name("Value #C", displayName="Last transaction", unit="dateTimeFromNow"),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {
                        "Time": True,
                        "actor_id": True,
                        "machine_id": True,
                        "Value #D": True,
                    },
                    "indexByName": {name: index for index, name in enumerate(order)},
                    "renameByName": {"actor": "Operator", "machine": "Machine", "city": "City"},
                },
            },
        ],
    )


def _geomap(ids: Ids, y: int, status: str) -> JSON:
    keys = "actor_id, actor, machine_id, machine"
    silent_colors = thresholds(("green", None), ("orange", 900), ("red", 3600))
    layer: JSON = {
        "type": "markers",
        "name": "Chargers",
        "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
        "config": {
            "showLegend": True,
            "style": {
                "color": {"field": "Value #B", "fixed": "green"},
                "size": {"fixed": 6},
                "opacity": 0.8,
            },
        },
        "tooltip": True,
    }
    return panel(
        ids,
        "geomap",
        "Chargers on the map",
        "Each machine at its discovered coordinates (nayax_ev_machine_info), coloured by "
        "the time since its last keep-alive: green, orange after 15 min, red after 1 h.",
        "s",
        grid=(14, y, 10, 12),
        targets=[
            target(
                "A",
                f"max by ({keys}, city, latitude, longitude) (nayax_ev_machine_info{status})",
                instant=True,
                table=True,
            ),
            target(
                "B",
                f"time() - max by ({keys}) "
                f"(nayax_ev_machine_last_keepalive_timestamp_seconds{status})",
                instant=True,
                table=True,
            ),
        ],
        defaults={"thresholds": silent_colors, "color": {"mode": "thresholds"}},
        options={
            "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 2},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [layer],
            "tooltip": {"mode": "details"},
        },
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "convertFieldType",
                "options": {
                    "conversions": [
                        {"targetField": "latitude", "destinationType": "number"},
                        {"targetField": "longitude", "destinationType": "number"},
                    ],
                    "fields": {},
                },
            },
        ],
    )


def machine_status(ids: Ids, y: int) -> list[JSON]:
    """Which charger is silent, and where: per-machine status and discovery."""
    status = sel(ACTOR, MACHINE)
    return [
        row(ids, "Machine status", y),
        _silent_table(ids, y + 1, status),
        _geomap(ids, y + 1, status),
    ]


def zero_while_scraped(label: str, value: str) -> str:
    """A 0 with ``label="value"`` while Prometheus scrapes an exporter of the job,
    nothing otherwise: the fallback that keeps a panel of counters that appear
    only on a fault ("API errors", "429") at 0 instead of "No data"."""
    return f'label_replace(0 * sum(up{EXPORTER}), "{label}", "{value}", "", "")'


def exporter_health(ids: Ids, y: int) -> list[JSON]:
    target_keys = "max by (actor, machine, window)"
    rate_interval = "[$__rate_interval]"
    requests = "nayax_ev_api_requests_total"
    buckets = f"nayax_ev_api_request_duration_seconds_bucket{EXPORTER}{rate_interval}"
    rate_legend = timeseries_options(["mean", "max"])
    return [
        row(ids, "Exporter health", y),
        panel(
            ids,
            "state-timeline",
            "Poll target status",
            "nayax_ev_target_up per target (operator, machine if any, window): whether the "
            "exporter's last poll of that target succeeded. Alert: NayaxEVTargetDown.",
            "none",
            grid=(0, y + 1, 12, 8),
            targets=[
                target(
                    "A",
                    f"{target_keys} (nayax_ev_target_up{TARGET})",
                    "{{actor}} {{machine}} · {{window}}",
                )
            ],
            defaults={
                "color": {"mode": "thresholds"},
                "thresholds": thresholds(("red", None), ("green", 1)),
                "mappings": value_mapping((0, "failing", "red"), (1, "ok", "green")),
                "custom": {"fillOpacity": 80, "lineWidth": 0},
            },
            options={
                "mergeValues": True,
                "showValue": "never",
                "alignValue": "left",
                "rowHeight": 0.9,
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                "tooltip": {"mode": "single", "sort": "none"},
            },
        ),
        panel(
            ids,
            "timeseries",
            "Data age",
            "Seconds since the last successful poll of each target. Above 900 s (dashed "
            "line) for 5 minutes raises NayaxEVDataStale.",
            "s",
            grid=(12, y + 1, 12, 8),
            targets=[
                target(
                    "A",
                    f"time() - {target_keys} "
                    f"(nayax_ev_target_last_success_timestamp_seconds{TARGET})",
                    "{{actor}} {{machine}} · {{window}}",
                )
            ],
            defaults={
                **timeseries_custom("dashed", fill=0),
                "min": 0,
                "thresholds": thresholds(("green", None), ("red", 900)),
            },
            options=timeseries_options(["lastNotNull", "max"]),
        ),
        panel(
            ids,
            "timeseries",
            "API errors by code",
            "Lynx API requests that did not return 2xx, by HTTP status or by "
            '"timeout"/"connection" for requests that got no answer. 0 (code "none") '
            "while every request succeeds.",
            "reqps",
            grid=(0, y + 9, 8, 8),
            targets=[
                target(
                    "A",
                    f"sum by (code) (rate({requests}{NON_2XX}{rate_interval})) "
                    f"or on () {zero_while_scraped('code', 'none')}",
                    "{{code}}",
                )
            ],
            defaults={**timeseries_custom(), "min": 0},
            options=rate_legend,
        ),
        panel(
            ids,
            "timeseries",
            "Rate-limited requests (HTTP 429)",
            "Requests the Lynx API refused with HTTP 429, per exporter instance "
            "(0 for an instance that got none). Sustained for 15 minutes: "
            "NayaxEVApiRateLimited.",
            "reqps",
            grid=(8, y + 9, 8, 8),
            targets=[
                target(
                    "A",
                    f"sum by (instance) (rate({requests}{HTTP_429}{rate_interval})) "
                    f"or 0 * sum by (instance) (up{EXPORTER})",
                    "{{instance}}",
                )
            ],
            defaults={**timeseries_custom(), "min": 0},
            options=rate_legend,
        ),
        panel(
            ids,
            "timeseries",
            "API latency",
            "Lynx API request duration: 95th and 50th percentile over all requests, "
            "from the nayax_ev_api_request_duration_seconds histogram.",
            "s",
            grid=(16, y + 9, 8, 8),
            targets=[
                target(
                    "A",
                    f"histogram_quantile(0.95, sum by (le) (rate({buckets})))",
                    "p95",
                ),
                target(
                    "B",
                    f"histogram_quantile(0.5, sum by (le) (rate({buckets})))",
                    "p50",
                ),
            ],
            defaults={**timeseries_custom(), "min": 0},
            options=rate_legend,
        ),
        panel(
            ids,
            "timeseries",
            "Poll errors by reason",
            "Failed polls per actor id and reason (auth, not_found, rate_limited, "
            "server_error, timeout, connection, bad_payload, unknown_unit, client_error). "
            "See docs/runbook.md, NayaxEVTargetDown.",
            "reqps",
            grid=(0, y + 17, 12, 8),
            targets=[
                target(
                    "A",
                    "sum by (actor_id, reason) "
                    f"(rate(nayax_ev_poll_errors_total{EXPORTER}{rate_interval}))",
                    "{{actor_id}} {{reason}}",
                )
            ],
            defaults={**timeseries_custom(), "min": 0},
            options=rate_legend,
        ),
        panel(
            ids,
            "stat",
            "Exporters up",
            "Exporter instances that Prometheus scraped successfully (up == 1). "
            "Red at 0: NayaxEVExporterDown.",
            "none",
            grid=(12, y + 17, 3, 8),
            targets=[target("A", f"sum(up{EXPORTER})", "up", instant=True)],
            defaults={
                "color": {"mode": "thresholds"},
                "thresholds": thresholds(("red", None), ("green", 1)),
                "decimals": 0,
            },
            options=stat_options(),
        ),
        panel(
            ids,
            "stat",
            "Config reload",
            "Whether the exporter's last configuration reload succeeded (worst instance). "
            "Failed for 5 minutes: NayaxEVConfigReloadFailed.",
            "none",
            grid=(15, y + 17, 3, 8),
            targets=[
                target(
                    "A",
                    f"min(nayax_ev_config_last_reload_successful{EXPORTER})",
                    "reload",
                    instant=True,
                )
            ],
            defaults={
                "color": {"mode": "thresholds"},
                "thresholds": thresholds(("red", None), ("green", 1)),
                "mappings": value_mapping((0, "failed", "red"), (1, "ok", "green")),
            },
            options=stat_options(),
        ),
        panel(
            ids,
            "stat",
            "Last config reload",
            "When the exporter last loaded its configuration successfully (most recent instance).",
            "dateTimeFromNow",
            grid=(18, y + 17, 3, 8),
            targets=[
                target(
                    "A",
                    f"max(nayax_ev_config_last_reload_success_timestamp_seconds{EXPORTER}) * 1000",
                    "last reload",
                    instant=True,
                )
            ],
            options=stat_options(color_mode="none"),
        ),
        panel(
            ids,
            "stat",
            "Exporter version",
            "Exporter and Python versions of the running instances (nayax_ev_build_info).",
            "none",
            grid=(21, y + 17, 3, 8),
            targets=[
                target(
                    "A",
                    f"count by (version, python_version) (nayax_ev_build_info{EXPORTER})",
                    "{{version}} (Python {{python_version}})",
                    instant=True,
                )
            ],
            options=stat_options(text_mode="name", color_mode="none"),
        ),
        panel(
            ids,
            "timeseries",
            "Poll round vs interval",
            "How long the last full poll round of each request kind took (every target "
            "of that kind polled once), per exporter instance, against the kind's "
            "configured interval. Above 1.5 times the interval for 15 minutes: "
            "NayaxEVPollingBehind (see --config.check for the request budget).",
            "s",
            grid=(0, y + 25, 24, 8),
            targets=[
                target(
                    "A",
                    f"max by (instance, kind) (nayax_ev_poll_round_duration_seconds{EXPORTER})",
                    "{{kind}} round · {{instance}}",
                ),
                target(
                    "B",
                    f"max by (instance, kind) (nayax_ev_poll_interval_seconds{EXPORTER})",
                    "{{kind}} interval · {{instance}}",
                ),
            ],
            defaults={**timeseries_custom(), "min": 0},
            options=timeseries_options(["lastNotNull", "max"]),
        ),
    ]


# ---------------------------------------------------------------------------
# Variables and dashboard
# ---------------------------------------------------------------------------


def query_variable(name: str, query: str) -> JSON:
    return {
        "name": name,
        "label": name.title(),
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "StandardVariableQuery"},
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
        "skipUrlSync": False,
    }


def templating() -> JSON:
    datasource: JSON = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": "Prometheus", "value": DATASOURCE_UID},
        "options": [],
        "regex": "",
        "refresh": 1,
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "skipUrlSync": False,
    }
    return {
        "list": [
            datasource,
            query_variable("job", "label_values(nayax_ev_build_info, job)"),
            query_variable("actor", 'label_values(nayax_ev_operator_machines{job=~"$job"}, actor)'),
            query_variable(
                "machine",
                'label_values(nayax_ev_target_up{job=~"$job", actor=~"$actor"}, machine)',
            ),
            query_variable(
                "window",
                'label_values(nayax_ev_target_up{job=~"$job", actor=~"$actor"}, window)',
            ),
        ]
    }


def build() -> JSON:
    ids = Ids()
    panels: list[JSON] = []
    y = 0
    for make_row in (fleet_health, charging_business, machines, machine_status, exporter_health):
        row_panels = make_row(ids, y)
        panels.extend(row_panels)
        y = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in row_panels)
    return {
        "uid": DASHBOARD_UID,
        "title": "Nayax EV",
        "description": "Nayax EV charging fleet, business figures and exporter health "
        "(nayax-ev-exporter, Lynx API evDashboard).",
        "tags": ["nayax", "ev-charging", "nayax-ev-exporter"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "weekStart": "",
        "liveNow": False,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "links": [
            {
                "title": "Runbook",
                "type": "link",
                "url": RUNBOOK,
                "icon": "doc",
                "tooltip": "What to do when a Nayax EV alert fires",
                "targetBlank": True,
                "asDropdown": False,
                "includeVars": False,
                "keepTime": False,
                "tags": [],
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": templating(),
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
