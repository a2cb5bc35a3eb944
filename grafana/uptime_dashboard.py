"""Dashboard "Charger uptime" (uid nayax-ev-uptime): per-charger communication
uptime, from the recording rules of group nayax-ev-uptime (prometheus/alerts.yml).

Every panel reads recorded series, never a long range of the per-minute signal:
instant values of the per-minute ratios and sums, and the hourly sums over a
one-hour range. At 10,000 chargers a 30-day range of the raw signal would read
432 million samples per refresh.
"""

from __future__ import annotations

from dashboard_kit import (
    ACTOR,
    MACHINE,
    RED_FROM_ONE,
    Ids,
    Panel,
    Section,
    Steps,
    bottom,
    by_name,
    dashboard,
    datasource_variable,
    instant_table,
    lay_out,
    lines,
    merge_and_organize,
    place,
    query,
    query_variable,
    row,
    runbook_link,
    sel,
    threshold_stat,
    thresholds,
    top_ten,
)
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

UID = "nayax-ev-uptime"
# The target and the minimum of known minutes of NayaxEVChargerUptimeAtRisk
# (prometheus/alerts.yml). tests/test_dashboard.py fails while they differ.
UPTIME_TARGET = 0.97
UPTIME_MIN_KNOWN_MINUTES = 10080  # 7 days
CHARGER = sel(ACTOR, MACHINE)
KEYS = "actor_id, actor, machine_id, machine"
SIGNAL = "nayax_ev:machine_communicating"
RATIO_1D = f"{SIGNAL}:ratio_1d{CHARGER}"
RATIO_30D = f"{SIGNAL}:ratio_30d{CHARGER}"
SUM_30D = f"{SIGNAL}:sum_30d{CHARGER}"
COUNT_30D = f"{SIGNAL}:count_30d{CHARGER}"
# Red below the target, green from it on.
TARGET_STEPS: Steps = (("red", None), ("green", UPTIME_TARGET))


def hourly(kind: str) -> str:
    """Per charger, the communicating (``sum``) or known (``count``) minutes of the
    last whole hour: the hourly series has one sample an hour, which an instant
    lookup (5 minutes back) would mostly miss."""
    return f"last_over_time({SIGNAL}:{kind}_1h{CHARGER}[1h])"


def only_with_data(expr: str) -> str:
    """``expr``, or 0 where uptime series exist but ``expr`` finds nothing: a count of
    zero chargers shows 0, and "No data" stays for "no uptime series at all"."""
    return f"{expr} or on () 0 * count({COUNT_30D})"


# ---------------------------------------------------------------------------
# Trailing 30 days
# ---------------------------------------------------------------------------


def trailing_30_days(ids: Ids, y: int) -> Section:
    heading = row(ids, "Trailing 30 days", y)
    return heading, [
        *_tiles(ids, y + 1),
        _per_charger(ids, y + 5),
        _most_outage(ids, y + 17),
    ]


def _tiles(ids: Ids, y: int) -> list[Panel]:
    below = f"count({RATIO_30D} < {UPTIME_TARGET} and {COUNT_30D} >= {UPTIME_MIN_KNOWN_MINUTES})"
    specs = [
        (
            "Fleet uptime, 30 days",
            "Communicating minutes divided by known minutes over the last 720 whole hours, "
            f"all selected chargers together. Red below the {UPTIME_TARGET:.0%} target.",
            "percentunit",
            f"sum({SUM_30D}) / sum({COUNT_30D})",
            TARGET_STEPS,
        ),
        (
            "Chargers below target",
            f"Chargers whose 30-day uptime is below {UPTIME_TARGET:.0%} and that have at "
            "least 7 days of known minutes: those NayaxEVChargerUptimeAtRisk fires for "
            "(if the exporter still publishes them).",
            "none",
            only_with_data(below),
            RED_FROM_ONE,
        ),
        (
            "Chargers not yet judged",
            "Chargers with fewer than 7 days of known minutes in the last 30 days: too "
            "short a history for the uptime alert (new chargers, or a new Prometheus).",
            "none",
            only_with_data(f"count({COUNT_30D} < {UPTIME_MIN_KNOWN_MINUTES})"),
            (("blue", None),),
        ),
        (
            "Chargers in outage now",
            "Chargers whose last keep-alive is more than 15 minutes old "
            "(nayax_ev:machine_communicating == 0). Unknown ones are not counted.",
            "none",
            f"sum(1 - {SIGNAL}{CHARGER})",
            RED_FROM_ONE,
        ),
    ]
    panels: list[Panel] = []
    for i, (title, description, unit, expr, steps) in enumerate(specs):
        tile = threshold_stat(expr, title, steps, decimals=2 if unit == "percentunit" else 0)
        place(tile, ids, title, description, unit, (6 * i, y, 6, 4))
        panels.append(tile)
    return panels


def _per_charger(ids: Ids, y: int) -> Panel:
    def latest(expr: str, extra: str = "") -> str:
        return f"max by ({KEYS}{extra}) ({expr})"

    def uptime(field: str, title: str) -> tuple[str, list[model.DynamicConfigValue]]:
        return by_name(
            field,
            displayName=title,
            unit="percentunit",
            decimals=2,
            thresholds=thresholds(*TARGET_STEPS),
            custom={"cellOptions": {"type": "color-background"}},
        )

    table = instant_table(
        "30-day uptime",
        [
            latest(RATIO_30D),
            latest(RATIO_1D),
            latest(f"{COUNT_30D} - {SUM_30D}"),
            latest(COUNT_30D),
            latest(f"nayax_ev_machine_info{CHARGER}", ", city"),
        ],
        [
            uptime("Value #A", "30-day uptime"),
            uptime("Value #B", "24-hour uptime"),
            by_name("Value #C", displayName="Outage (30 days)", unit="m", decimals=0),
            by_name("Value #D", displayName="Known (30 days)", unit="m", decimals=0),
        ],
        merge_and_organize(
            ["machine", "actor", "city", "Value #A", "Value #B", "Value #C", "Value #D"],
            exclude=["Time", "actor_id", "machine_id", "Value #E"],
            rename={"actor": "Operator", "machine": "Machine", "city": "City"},
        ),
        desc=False,
    )
    place(
        table,
        ids,
        "Uptime per charger",
        "Each charger's communication uptime (communicating minutes divided by known "
        "minutes; a minute counts as communicating when the last keep-alive was at most "
        "15 minutes old), lowest first: over the last 720 and the last 24 whole hours, "
        "red below the target. Outage: minutes in outage in the 30 days; known: minutes "
        "with a status at all (unknown minutes count on neither side). The Lynx API "
        "cannot see whether a port dispenses energy.",
        "none",
        (0, y, 24, 12),
    )
    return table


def _most_outage(ids: Ids, y: int) -> Panel:
    top = top_ten(
        f"max by ({KEYS}) ({COUNT_30D} - {SUM_30D}) > 0",
        "{{machine}} ({{actor}})",
        model.FieldColorModeId.CONTINUOUS_YL_RD,
        decimals=0,
    )
    place(
        top,
        ids,
        "Most outage minutes, 30 days",
        "The ten chargers with the most minutes in outage over the last 720 whole hours.",
        "m",
        (0, y, 24, 8),
    )
    return top


# ---------------------------------------------------------------------------
# Per hour
# ---------------------------------------------------------------------------


def per_hour(ids: Ids, y: int) -> Section:
    heading = row(ids, "Per hour", y)
    uptime = lines(common.GraphThresholdsStyleMode.DASHED).min(0).max(1)
    uptime.thresholds(thresholds(*TARGET_STEPS)).decimals(1)
    uptime.with_target(
        query(
            "A",
            f"sum by (actor) ({hourly('sum')}) / sum by (actor) ({hourly('count')})",
            "{{actor}}",
        )
    )
    place(
        uptime,
        ids,
        "Operator uptime per hour",
        "Communicating minutes divided by known minutes of each whole hour, over the "
        f"selected chargers of each operator. The dashed line is the {UPTIME_TARGET:.0%} "
        "target (of the 30-day figure: one bad hour does not miss it).",
        "percentunit",
        (0, y + 1, 12, 8),
    )
    outage = lines(fill=30).min(0).decimals(0)
    outage.draw_style(common.GraphDrawStyle.BARS)
    outage.with_target(
        query(
            "A",
            f"sum by (actor) ({hourly('count')} - {hourly('sum')})",
            "{{actor}}",
        )
    )
    place(
        outage,
        ids,
        "Outage minutes per hour",
        "Minutes in outage of the selected chargers in each whole hour, per operator "
        "(60 = one charger down for the whole hour). Unknown minutes are not counted.",
        "m",
        (12, y + 1, 12, 8),
    )
    return heading, [uptime, outage]


# ---------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------


def build() -> dashboard_builders.Dashboard:
    built = (
        dashboard(
            UID,
            "Charger uptime",
            "Per-charger communication uptime the way regulators count it: minutes in which "
            "the charger's last keep-alive was at most 15 minutes old, over the last 30 "
            "days (nayax-ev-exporter, recording rules nayax-ev-uptime).",
        )
        .time("now-7d", "now")
        .link(runbook_link("nayaxevchargeruptimeatrisk"))
        .with_variable(datasource_variable())
        .with_variable(query_variable("job", f"label_values({SIGNAL}:ratio_30d, job)"))
        .with_variable(
            query_variable("actor", f'label_values({SIGNAL}:ratio_30d{{job=~"$job"}}, actor)')
        )
        .with_variable(
            query_variable(
                "machine",
                f'label_values({SIGNAL}:ratio_30d{{job=~"$job", actor=~"$actor"}}, machine)',
            )
        )
    )
    ids = Ids()
    first = trailing_30_days(ids, 0)
    lay_out(built, [first, per_hour(ids, bottom(first))])
    return built
