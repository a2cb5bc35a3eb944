"""Dashboard "Nayax EV" (uid nayax-ev): fleet health, charging business, machines,
machine status and exporter health."""

from __future__ import annotations

from dashboard_kit import (
    ACTOR,
    GREEN_FROM_ONE,
    GREEN_ONLY,
    MACHINE,
    RED_FROM_ONE,
    WINDOW,
    Ids,
    Panel,
    Section,
    Steps,
    bottom,
    by_name,
    color,
    dashboard,
    datasource_variable,
    instant_table,
    lay_out,
    legend,
    lines,
    merge_and_organize,
    place,
    query,
    query_variable,
    row,
    runbook_link,
    sel,
    stat_panel,
    threshold_stat,
    thresholds,
    tooltip,
    top_ten,
    transformation,
    value_mapping,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import geomap, statetimeline
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as geomap_model

UID = "nayax-ev"
Grid = tuple[int, int, int, int]  # x, y, width, height
J_PER_KWH = "3.6e6"  # 1 kWh = 3.6e6 J
# Self-observation series of actor-wide targets have machine="" (no label):
# with "|" they stay visible whatever machines are selected.
MACHINE_OR_ACTOR_WIDE = 'machine=~"$machine|"'
OPERATOR = sel(ACTOR)
OPERATOR_WINDOW = sel(ACTOR, WINDOW)
MACHINE_WINDOW = sel(ACTOR, MACHINE, WINDOW)
TARGET = sel(ACTOR, MACHINE_OR_ACTOR_WIDE, WINDOW)
EXPORTER = sel()
NON_2XX = sel('code!~"2.."')
HTTP_429 = sel('code="429"')
# Time since a keep-alive: orange after 15 min, red after 1 h (NayaxEVMachineSilent).
SILENCE_STEPS: Steps = (
    ("green", None),
    ("orange", 900),
    ("red", 3600),
)


# ---------------------------------------------------------------------------
# Fleet health
# ---------------------------------------------------------------------------

FLEET_TILES = [
    (
        "Machines",
        "nayax_ev_operator_machines",
        "Machines registered under the selected operators in Nayax.",
        False,
    ),
    (
        "Communicating machines",
        "nayax_ev_operator_communicating_machines",
        "Machines that Nayax currently reports as communicating with its back office.",
        False,
    ),
    (
        "Active machines",
        "nayax_ev_operator_active_machines",
        "Machines that Nayax reports as active.",
        False,
    ),
    (
        "Silent machines",
        "nayax_ev_operator_silent_machines",
        "Machines that Nayax reports as silent (not communicating for its silence "
        "period). Red when any machine is silent; see the NayaxEVMachinesSilent alert.",
        True,
    ),
]


def fleet_health(ids: Ids, y: int) -> Section:
    heading = row(ids, "Fleet health", y)
    panels: list[Panel] = []
    for i, (title, metric, description, red_above_zero) in enumerate(FLEET_TILES):
        # max by (actor_id) de-duplicates HA pairs of exporters polling one actor.
        expr = f"sum(max by (actor_id) ({metric}{OPERATOR}))"
        steps = RED_FROM_ONE if red_above_zero else GREEN_ONLY
        tile = threshold_stat(expr, title, steps, decimals=0)
        place(tile, ids, title, description, "none", (6 * i, y + 1, 6, 4))
        panels.append(tile)
    return heading, [*panels, *_silent_over_time(ids, y + 5)]


def _silent_over_time(ids: Ids, y: int) -> list[Panel]:
    by_actor = "max by (actor_id, actor)"
    over_time = lines().min(0).decimals(0)
    over_time.with_target(
        query("A", f"{by_actor} (nayax_ev_operator_silent_machines{OPERATOR})", "{{actor}}")
    )
    place(
        over_time,
        ids,
        "Silent machines over time",
        "Silent machines per operator, as reported by Nayax.",
        "none",
        (0, y, 12, 8),
    )
    ratio = lines(common.GraphThresholdsStyleMode.DASHED).min(0).max(1)
    ratio.thresholds(thresholds(("green", None), ("red", 0.2)))
    ratio.with_target(
        query(
            "A",
            f"{by_actor} (nayax_ev_operator_silent_machines{OPERATOR})"
            f" / {by_actor} (nayax_ev_operator_machines{OPERATOR} > 0)",
            "{{actor}}",
        )
    )
    place(
        ratio,
        ids,
        "Silent ratio",
        "Silent machines divided by all machines, per operator. The dashed line is the "
        "NayaxEVSilentRatioHigh alert threshold (20 %). Operators without machines "
        "are left out.",
        "percentunit",
        (12, y, 12, 8),
    )
    return [over_time, ratio]


# ---------------------------------------------------------------------------
# Charging business
# ---------------------------------------------------------------------------

BUSINESS_NOTE = (
    " Figures are the API's interval totals for each configured window (e.g. the last "
    "24 h), summed over the selected operators."
)


def per_window(metric: str, extra: str = "") -> str:
    return f"sum by (window{extra}) (max by (actor_id, window{extra}) ({metric}{OPERATOR_WINDOW}))"


def _business_panels(y: int) -> list[tuple[str, str, str, int | None, str, str, Grid]]:
    """(title, description, unit, decimals, expr, legend, place) of each panel."""
    return [
        (
            "Energy delivered",
            "Energy delivered by the selected operators' chargers, in kWh "
            "(the exporter reports joules; 1 kWh = 3.6 MJ).",
            "kwatth",
            1,
            f"{per_window('nayax_ev_operator_energy_joules')} / {J_PER_KWH}",
            "{{window}}",
            (0, y + 1, 12, 8),
        ),
        (
            "Sales per currency",
            "Sales amount in each currency's own units; the legend names the currency. "
            "Amounts in different currencies are never added up.",
            "short",
            2,
            per_window("nayax_ev_operator_sales_amount", ", currency"),
            "{{currency}} · {{window}}",
            (12, y + 1, 12, 8),
        ),
        (
            "Charging sessions",
            "Number of charging sessions.",
            "none",
            0,
            per_window("nayax_ev_operator_charging_sessions"),
            "{{window}}",
            (0, y + 9, 8, 8),
        ),
        (
            "Transactions",
            "Number of payment transactions.",
            "none",
            0,
            per_window("nayax_ev_operator_transactions"),
            "{{window}}",
            (8, y + 9, 8, 8),
        ),
        (
            "Average session duration",
            "Total charging duration divided by the number of charging sessions. "
            "Windows without sessions are left out.",
            "s",
            None,
            f"{per_window('nayax_ev_operator_charging_duration_seconds')}"
            f" / ({per_window('nayax_ev_operator_charging_sessions')} > 0)",
            "{{window}}",
            (16, y + 9, 8, 8),
        ),
    ]


def charging_business(ids: Ids, y: int) -> Section:
    heading = row(ids, "Charging business", y)
    panels: list[Panel] = []
    for title, description, unit, decimals, expr, legend_format, grid in _business_panels(y):
        panel = lines().min(0).with_target(query("A", expr, legend_format))
        if decimals is not None:
            panel.decimals(decimals)
        place(panel, ids, title, description + BUSINESS_NOTE, unit, grid)
        panels.append(panel)
    return heading, panels


# ---------------------------------------------------------------------------
# Machines
# ---------------------------------------------------------------------------


def machines(ids: Ids, y: int) -> Section:
    heading = row(ids, "Machines", y)
    keys = "actor_id, actor, machine_id, machine_number, machine, window"

    def latest(metric: str, extra: str = "") -> str:
        return f"max by ({keys}{extra}) ({metric}{MACHINE_WINDOW})"

    table = instant_table(
        "Energy",
        [
            f"{latest('nayax_ev_machine_energy_joules')} / {J_PER_KWH}",
            latest("nayax_ev_machine_sales_amount", ", currency"),
            latest("nayax_ev_machine_charging_sessions"),
            latest("nayax_ev_machine_charging_duration_seconds"),
        ],
        [
            by_name("Value #A", displayName="Energy", unit="kwatth", decimals=1),
            by_name("Value #B", displayName="Sales", unit="short", decimals=2),
            by_name("Value #C", displayName="Sessions", unit="none", decimals=0),
            by_name("Value #D", displayName="Charging time", unit="s"),
        ],
        merge_and_organize(
            [
                *("actor", "machine", "machine_number", "machine_id", "window"),
                *("Value #A", "Value #B", "currency", "Value #C", "Value #D"),
            ],
            exclude=["Time", "actor_id"],
            rename={
                "actor": "Operator",
                "machine": "Machine",
                "machine_number": "Machine number",
                "machine_id": "Machine ID",
                "window": "Window",
                "currency": "Currency",
            },
        ),
    )
    place(
        table,
        ids,
        "Machines",
        "Latest interval figures per machine and window: energy (kWh), sales (in the "
        "currency shown), charging sessions and total charging time. Only machines "
        "that the exporter is configured to poll individually appear here.",
        "none",
        (0, y + 1, 24, 10),
    )
    return heading, [table, _top_machines(ids, y + 11)]


def _top_machines(ids: Ids, y: int) -> Panel:
    top = top_ten(
        "max by (actor_id, actor, machine_id, machine, window) "
        f"(nayax_ev_machine_energy_joules{MACHINE_WINDOW}) / {J_PER_KWH}",
        "{{machine}} ({{actor}}, {{window}})",
        model.FieldColorModeId.CONTINUOUS_GR_YL_RD,
        decimals=1,
    )
    place(
        top,
        ids,
        "Top 10 machines by energy",
        "The ten machines that delivered the most energy (kWh) in each selected window.",
        "kwatth",
        (0, y, 24, 8),
    )
    return top


# ---------------------------------------------------------------------------
# Machine status
# ---------------------------------------------------------------------------


def machine_status(ids: Ids, y: int) -> Section:
    """Which charger is silent, and where: per-machine status and discovery."""
    heading = row(ids, "Machine status", y)
    status = sel(ACTOR, MACHINE)
    return heading, [_silent_table(ids, y + 1, status), _geomap(ids, y + 1, status)]


def _silent_table(ids: Ids, y: int, status: str) -> Panel:
    keys = "actor_id, actor, machine_id, machine"

    def latest(metric: str, extra: str = "") -> str:
        return f"max by ({keys}{extra}) ({metric}{status})"

    connected = value_mapping((0, "disconnected", "red"), (1, "connected", "green"))
    table = instant_table(
        "Since keep-alive",
        [
            f"time() - {latest('nayax_ev_machine_last_keepalive_timestamp_seconds')}",
            latest("nayax_ev_machine_mqtt_connected"),
            f"{latest('nayax_ev_machine_last_transaction_timestamp_seconds')} * 1000",
            latest("nayax_ev_machine_info", ", city"),
        ],
        [
            by_name(
                "Value #A",
                displayName="Since keep-alive",
                unit="s",
                thresholds=thresholds(*SILENCE_STEPS),
                custom={"cellOptions": {"type": "color-background"}},
            ),
            by_name("Value #B", displayName="MQTT", unit="none", mappings=connected),
            by_name("Value #C", displayName="Last transaction", unit="dateTimeFromNow"),
        ],
        merge_and_organize(
            ["machine", "actor", "city", "Value #A", "Value #B", "Value #C"],
            exclude=["Time", "actor_id", "machine_id", "Value #D"],
            rename={"actor": "Operator", "machine": "Machine", "city": "City"},
        ),
    )
    place(
        table,
        ids,
        "Silent machines",
        "Every machine with a status, longest silence first: time since its last "
        "keep-alive (red after 1 h, the NayaxEVMachineSilent threshold), its MQTT "
        "connection and its last transaction (GET /v1/machines/{id}/status).",
        "none",
        (0, y, 14, 12),
    )
    return table


def _charger_layer() -> common_builders.MapLayerOptions:
    return (
        common_builders.MapLayerOptions()
        .type("markers")
        .name("Chargers")
        .location(
            common_builders.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "Value #B", "fixed": "green"},
                    "size": {"fixed": 6},
                    "opacity": 0.8,
                },
            }
        )
        .tooltip(True)
    )


def _geomap(ids: Ids, y: int, status: str) -> Panel:
    keys = "actor_id, actor, machine_id, machine"
    chargers = (
        geomap.Panel()
        .thresholds(thresholds(*SILENCE_STEPS))
        .color_scheme(color(model.FieldColorModeId.THRESHOLDS))
        .view(geomap.MapViewConfig().id("fit").lat(0).lon(0).zoom(2))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
        .layers([_charger_layer()])
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
    )
    chargers.with_target(
        query(
            "A",
            f"max by ({keys}, city, latitude, longitude) (nayax_ev_machine_info{status})",
            instant=True,
            table=True,
        )
    )
    chargers.with_target(
        query(
            "B",
            f"time() - max by ({keys}) (nayax_ev_machine_last_keepalive_timestamp_seconds{status})",
            instant=True,
            table=True,
        )
    )
    numbers = [
        {"targetField": field, "destinationType": "number"} for field in ("latitude", "longitude")
    ]
    chargers.transformations(
        [
            transformation("merge"),
            transformation("convertFieldType", {"conversions": numbers, "fields": {}}),
        ]
    )
    place(
        chargers,
        ids,
        "Chargers on the map",
        "Each machine at its discovered coordinates (nayax_ev_machine_info), coloured by "
        "the time since its last keep-alive: green, orange after 15 min, red after 1 h.",
        "s",
        (14, y, 10, 12),
    )
    return chargers


# ---------------------------------------------------------------------------
# Exporter health
# ---------------------------------------------------------------------------

TARGET_KEYS = "max by (actor, machine, window)"
RATE_INTERVAL = "[$__rate_interval]"
REQUESTS = "nayax_ev_api_requests_total"


def zero_while_scraped(label: str, value: str) -> str:
    """A 0 with ``label="value"`` while Prometheus scrapes an exporter of the job,
    nothing otherwise: the fallback that keeps a panel of counters that appear
    only on a fault ("API errors", "429") at 0 instead of "No data"."""
    return f'label_replace(0 * sum(up{EXPORTER}), "{label}", "{value}", "", "")'


def exporter_health(ids: Ids, y: int) -> Section:
    heading = row(ids, "Exporter health", y)
    return heading, [
        *_targets(ids, y + 1),
        *_api(ids, y + 9),
        *_exporter_tiles(ids, y + 17),
        _poll_rounds(ids, y + 25),
    ]


def _targets(ids: Ids, y: int) -> list[Panel]:
    status = (
        statetimeline.Panel()
        .thresholds(thresholds(*GREEN_FROM_ONE))
        .color_scheme(color(model.FieldColorModeId.THRESHOLDS))
        .mappings(value_mapping((0, "failing", "red"), (1, "ok", "green")))
        .fill_opacity(80)
        .line_width(0)
        .merge_values(True)
        .show_value(common.VisibilityMode.NEVER)
        .align_value(common.TimelineValueAlignment.LEFT)
        .row_height(0.9)
        .legend(legend(show=False))
        .tooltip(tooltip(common.TooltipDisplayMode.SINGLE, common.SortOrder.NONE))
    )
    status.with_target(
        query(
            "A",
            f"{TARGET_KEYS} (nayax_ev_target_up{TARGET})",
            "{{actor}} {{machine}} · {{window}}",
        )
    )
    place(
        status,
        ids,
        "Poll target status",
        "nayax_ev_target_up per target (operator, machine if any, window): whether the "
        "exporter's last poll of that target succeeded. Alert: NayaxEVTargetDown.",
        "none",
        (0, y, 12, 8),
    )
    age = lines(common.GraphThresholdsStyleMode.DASHED, fill=0).min(0)
    age.thresholds(thresholds(("green", None), ("red", 900)))
    age.with_target(
        query(
            "A",
            f"time() - {TARGET_KEYS} (nayax_ev_target_last_success_timestamp_seconds{TARGET})",
            "{{actor}} {{machine}} · {{window}}",
        )
    )
    place(
        age,
        ids,
        "Data age",
        "Seconds since the last successful poll of each target. Above 900 s (dashed "
        "line) for 5 minutes raises NayaxEVDataStale.",
        "s",
        (12, y, 12, 8),
    )
    return [status, age]


def _api(ids: Ids, y: int) -> list[Panel]:
    buckets = f"nayax_ev_api_request_duration_seconds_bucket{EXPORTER}{RATE_INTERVAL}"
    specs = [
        (
            "API errors by code",
            "Lynx API requests that did not return 2xx, by HTTP status or by "
            '"timeout"/"connection" for requests that got no answer. 0 (code "none") '
            "while every request succeeds.",
            "reqps",
            [
                (
                    f"sum by (code) (rate({REQUESTS}{NON_2XX}{RATE_INTERVAL})) "
                    f"or on () {zero_while_scraped('code', 'none')}",
                    "{{code}}",
                )
            ],
        ),
        (
            "Rate-limited requests (HTTP 429)",
            "Requests the Lynx API refused with HTTP 429, per exporter instance "
            "(0 for an instance that got none). Sustained for 15 minutes: "
            "NayaxEVApiRateLimited.",
            "reqps",
            [
                (
                    f"sum by (instance) (rate({REQUESTS}{HTTP_429}{RATE_INTERVAL})) "
                    f"or 0 * sum by (instance) (up{EXPORTER})",
                    "{{instance}}",
                )
            ],
        ),
        (
            "API latency",
            "Lynx API request duration: 95th and 50th percentile over all requests, "
            "from the nayax_ev_api_request_duration_seconds histogram.",
            "s",
            [
                (f"histogram_quantile(0.95, sum by (le) (rate({buckets})))", "p95"),
                (f"histogram_quantile(0.5, sum by (le) (rate({buckets})))", "p50"),
            ],
        ),
    ]
    panels: list[Panel] = []
    for i, (title, description, unit, exprs) in enumerate(specs):
        panel = lines(legend_calcs=["mean", "max"]).min(0)
        for ref_id, (expr, legend_format) in zip("AB", exprs, strict=False):
            panel.with_target(query(ref_id, expr, legend_format))
        place(panel, ids, title, description, unit, (8 * i, y, 8, 8))
        panels.append(panel)
    return panels


def _exporter_tiles(ids: Ids, y: int) -> list[Panel]:
    errors = lines(legend_calcs=["mean", "max"]).min(0)
    errors.with_target(
        query(
            "A",
            "sum by (actor_id, reason) "
            f"(rate(nayax_ev_poll_errors_total{EXPORTER}{RATE_INTERVAL}))",
            "{{actor_id}} {{reason}}",
        )
    )
    place(
        errors,
        ids,
        "Poll errors by reason",
        "Failed polls per actor id and reason (auth, not_found, rate_limited, "
        "server_error, timeout, connection, bad_payload, unknown_unit, client_error). "
        "See docs/runbook.md, NayaxEVTargetDown.",
        "reqps",
        (0, y, 12, 8),
    )
    up = threshold_stat(f"sum(up{EXPORTER})", "up", GREEN_FROM_ONE, decimals=0)
    place(
        up,
        ids,
        "Exporters up",
        "Exporter instances that Prometheus scraped successfully (up == 1). "
        "Red at 0: NayaxEVExporterDown.",
        "none",
        (12, y, 3, 8),
    )
    return [errors, up, *_reload_and_version(ids, y)]


def _reload_and_version(ids: Ids, y: int) -> list[Panel]:
    reload_ok = threshold_stat(
        f"min(nayax_ev_config_last_reload_successful{EXPORTER})", "reload", GREEN_FROM_ONE
    )
    reload_ok.mappings(value_mapping((0, "failed", "red"), (1, "ok", "green")))
    place(
        reload_ok,
        ids,
        "Config reload",
        "Whether the exporter's last configuration reload succeeded (worst instance). "
        "Failed for 5 minutes: NayaxEVConfigReloadFailed.",
        "none",
        (15, y, 3, 8),
    )
    last = stat_panel(color_mode=common.BigValueColorMode.NONE).with_target(
        query(
            "A",
            f"max(nayax_ev_config_last_reload_success_timestamp_seconds{EXPORTER}) * 1000",
            "last reload",
            instant=True,
        )
    )
    place(
        last,
        ids,
        "Last config reload",
        "When the exporter last loaded its configuration successfully (most recent instance).",
        "dateTimeFromNow",
        (18, y, 3, 8),
    )
    version = stat_panel(common.BigValueTextMode.NAME, common.BigValueColorMode.NONE).with_target(
        query(
            "A",
            f"count by (version, python_version) (nayax_ev_build_info{EXPORTER})",
            "{{version}} (Python {{python_version}})",
            instant=True,
        )
    )
    place(
        version,
        ids,
        "Exporter version",
        "Exporter and Python versions of the running instances (nayax_ev_build_info).",
        "none",
        (21, y, 3, 8),
    )
    return [reload_ok, last, version]


def _poll_rounds(ids: Ids, y: int) -> Panel:
    rounds = lines().min(0)
    rounds.with_target(
        query(
            "A",
            f"max by (instance, kind) (nayax_ev_poll_round_duration_seconds{EXPORTER})",
            "{{kind}} round · {{instance}}",
        )
    )
    rounds.with_target(
        query(
            "B",
            f"max by (instance, kind) (nayax_ev_poll_interval_seconds{EXPORTER})",
            "{{kind}} interval · {{instance}}",
        )
    )
    place(
        rounds,
        ids,
        "Poll round vs interval",
        "How long the last full poll round of each request kind took (every target "
        "of that kind polled once), per exporter instance, against the kind's "
        "configured interval. Above 1.5 times the interval for 15 minutes: "
        "NayaxEVPollingBehind (see --config.check for the request budget).",
        "s",
        (0, y, 24, 8),
    )
    return rounds


# ---------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------


def build() -> dashboard_builders.Dashboard:
    built = (
        dashboard(
            UID,
            "Nayax EV",
            "Nayax EV charging fleet, business figures and exporter health "
            "(nayax-ev-exporter, Lynx API evDashboard).",
        )
        .time("now-24h", "now")
        .link(runbook_link())
        .with_variable(datasource_variable())
        .with_variable(query_variable("job", "label_values(nayax_ev_build_info, job)"))
        .with_variable(
            query_variable("actor", 'label_values(nayax_ev_operator_machines{job=~"$job"}, actor)')
        )
        .with_variable(
            query_variable(
                "machine",
                'label_values(nayax_ev_target_up{job=~"$job", actor=~"$actor"}, machine)',
            )
        )
        .with_variable(
            query_variable(
                "window",
                'label_values(nayax_ev_target_up{job=~"$job", actor=~"$actor"}, window)',
            )
        )
    )
    ids = Ids()
    sections: list[Section] = []
    y = 0
    for make in (fleet_health, charging_business, machines, machine_status, exporter_health):
        sections.append(make(ids, y))
        y = bottom(sections[-1])
    lay_out(built, sections)
    return built
