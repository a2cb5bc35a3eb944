"""Building blocks shared by the project's dashboards, on grafana-foundation-sdk.

The SDK's typed builders write Grafana's dashboard JSON model; these helpers
fix the house style once (query editor in code mode, step lines, table
footers off, ...) so a panel definition only says what is particular to it.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from typing import Any, Protocol, Self

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

JSON = dict[str, Any]
# Threshold steps: (colour, from value), the first from None (minus infinity).
Steps = tuple[tuple[str, float | None], ...]
GREEN_ONLY: Steps = (("green", None),)
RED_FROM_ONE: Steps = (("green", None), ("red", 1))  # a count of which any one is bad
GREEN_FROM_ONE: Steps = (("red", None), ("green", 1))  # a flag or count that must be 1+
Panel = Builder[model.Panel]
# A row and the panels under it.
Section = tuple[dashboard_builders.Row, list[Panel]]

# The data source. Panels and variable queries use the dashboard's ${datasource}
# variable; its default is the import input DS_PROMETHEUS, so Grafana's import
# dialog asks which Prometheus to use and writes its uid there. Provisioned
# dashboards skip the import step: the default stays an unknown uid and Grafana
# falls back to the first Prometheus data source (the one that
# grafana/provisioning/datasources/prometheus.yaml installs).
DS_INPUT = "DS_PROMETHEUS"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
INPUTS: list[JSON] = [
    {
        "name": DS_INPUT,
        "label": "Prometheus",
        "description": "The Prometheus that scrapes nayax-ev-exporter (job nayax-ev).",
        "type": "datasource",
        "pluginId": "prometheus",
        "pluginName": "Prometheus",
    }
]
RUNBOOK = "https://github.com/nayax-ev-exporter/nayax-ev-exporter/blob/main/docs/runbook.md"

# Label selectors. Every selector carries job=~"$job" (dashboard-linter's
# target-job-rule); the others narrow by the dashboard's variables.
JOB = 'job=~"$job"'
ACTOR = 'actor=~"$actor"'
WINDOW = 'window=~"$window"'
MACHINE = 'machine=~"$machine"'


def sel(*matchers: str) -> str:
    """Return a label selector ``{job=~"$job", ...}``."""
    return "{" + ", ".join((JOB, *matchers)) + "}"


class Ids:
    """Hands out panel ids in layout order, so ids are unique and stable."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


class PanelBuilder(Protocol):
    """What every panel builder of the SDK offers (each panel type has its own class)."""

    def id(self, id_val: int) -> Self: ...
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def grid_pos(self, grid_pos: model.GridPos) -> Self: ...


def place(  # noqa: PLR0917 (the five facts every panel has, in reading order)
    panel: PanelBuilder,
    ids: Ids,
    title: str,
    description: str,
    unit: str,
    grid: tuple[int, int, int, int],
) -> None:
    """Give a panel its id, title, description, data source, unit and place
    (x, y, width, height)."""
    x, y, w, h = grid
    panel.id(ids()).title(title).description(description).datasource(DATASOURCE).unit(unit)
    panel.grid_pos(model.GridPos(x=x, y=y, w=w, h=h))


def row(ids: Ids, title: str, y: int) -> dashboard_builders.Row:
    return (
        dashboard_builders.Row(title)
        .id(ids())
        .collapsed(False)
        .grid_pos(model.GridPos(x=0, y=y, w=24, h=1))
    )


# ---------------------------------------------------------------------------
# Queries and field configuration
# ---------------------------------------------------------------------------


def query(
    ref_id: str,
    expr: str,
    legend: str = "__auto",
    *,
    instant: bool = False,
    table: bool = False,
) -> prometheus.Dataquery:
    built = (
        prometheus.Dataquery()
        .datasource(DATASOURCE)
        .editor_mode(prometheus_model.QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
    )
    built = built.instant() if instant else built.range()
    if table:
        built = built.format(prometheus_model.PromQueryFormat.TABLE)
    return built


def thresholds(*steps: tuple[str, float | None]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(color=color, value=value) for color, value in steps])
    )


def green_only() -> dashboard_builders.ThresholdsConfig:
    return thresholds(*GREEN_ONLY)


def color(mode: model.FieldColorModeId) -> dashboard_builders.FieldColor:
    return dashboard_builders.FieldColor().mode(mode)


def value_mapping(*entries: tuple[int, str, str]) -> list[model.ValueMapping]:
    """One value mapping: each number shown as a word in a colour."""
    return [
        model.ValueMap(
            options={
                str(value): model.ValueMappingResult(text=text, color=colour, index=index)
                for index, (value, text, colour) in enumerate(entries)
            }
        )
    ]


def prop(key: str, value: object) -> model.DynamicConfigValue:
    """One override property; builders (thresholds) become their model."""
    if isinstance(value, dashboard_builders.ThresholdsConfig):
        value = value.build()
    return model.DynamicConfigValue(id_val=key, value=value)


def by_name(name: str, **props: object) -> tuple[str, list[model.DynamicConfigValue]]:
    """Field overrides for the field called ``name`` (``override_by_name`` arguments)."""
    return name, [prop(key, value) for key, value in props.items()]


def transformation(kind: str, options: JSON | None = None) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=kind, options=options or {})


def merge_and_organize(
    order: Sequence[str], exclude: Sequence[str], rename: dict[str, str]
) -> list[model.DataTransformerConfig]:
    """Table queries merged into one row per series, columns ordered and named."""
    return [
        transformation("merge"),
        transformation(
            "organize",
            {
                "excludeByName": dict.fromkeys(exclude, True),
                "indexByName": {name: index for index, name in enumerate(order)},
                "renameByName": rename,
            },
        ),
    ]


# ---------------------------------------------------------------------------
# Panel options in the house style
# ---------------------------------------------------------------------------


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def legend(
    calcs: list[str] | None = None, *, show: bool = True
) -> common_builders.VizLegendOptions:
    mode = common.LegendDisplayMode.TABLE if calcs else common.LegendDisplayMode.LIST
    return (
        common_builders.VizLegendOptions()
        .calcs(calcs or [])
        .display_mode(mode)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(show)
    )


def tooltip(
    mode: common.TooltipDisplayMode = common.TooltipDisplayMode.MULTI,
    sort: common.SortOrder = common.SortOrder.DESCENDING,
) -> common_builders.VizTooltipOptions:
    return common_builders.VizTooltipOptions().mode(mode).sort(sort)


def table_footer_off() -> common_builders.TableFooterOptions:
    return common_builders.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False)


def sorted_table(sort_by: str, *, desc: bool = True) -> table_panel.Panel:
    """A table panel: header, small cells, no footer, filterable columns, sorted by
    one column."""
    return (
        table_panel.Panel()
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .footer(table_footer_off())
        .sort_by([common_builders.TableSortByFieldState().display_name(sort_by).desc(desc)])
        .align(common.FieldTextAlignment.AUTO)
        .filterable(True)
    )


def stat_panel(
    text_mode: common.BigValueTextMode = common.BigValueTextMode.VALUE,
    color_mode: common.BigValueColorMode = common.BigValueColorMode.BACKGROUND,
) -> stat.Panel:
    return (
        stat.Panel()
        .thresholds(green_only())
        .reduce_options(last_value())
        .color_mode(color_mode)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.CENTER)
        .orientation(common.VizOrientation.AUTO)
        .text_mode(text_mode)
        .wide_layout(True)
        .show_percent_change(False)
    )


def threshold_stat(
    expr: str,
    legend_format: str,
    steps: Steps,
    decimals: int | None = None,
) -> stat.Panel:
    """A stat panel of one instant query, coloured by its thresholds ``steps``."""
    tile = stat_panel().with_target(query("A", expr, legend_format, instant=True))
    tile.thresholds(thresholds(*steps)).color_scheme(color(model.FieldColorModeId.THRESHOLDS))
    if decimals is not None:
        tile.decimals(decimals)
    return tile


def instant_table(
    sort_by: str,
    exprs: Sequence[str],
    overrides: Sequence[tuple[str, list[model.DynamicConfigValue]]],
    transformations: list[model.DataTransformerConfig],
    *,
    desc: bool = True,
) -> table_panel.Panel:
    """A sorted table of instant queries (ref ids A, B, ... in order), its columns
    set by ``overrides`` (``by_name``) and ``transformations``."""
    table = sorted_table(sort_by, desc=desc)
    for ref_id, expr in zip(string.ascii_uppercase, exprs, strict=False):
        table.with_target(query(ref_id, expr, instant=True, table=True))
    table.thresholds(green_only())
    for name, props in overrides:
        table.override_by_name(name, props)
    return table.transformations(transformations)


def top_ten(
    expr: str, legend_format: str, scheme: model.FieldColorModeId, decimals: int
) -> bargauge.Panel:
    """Horizontal gradient bars of ``topk(10, ...)``'s last values, one per series."""
    top = (
        bargauge.Panel()
        .thresholds(green_only())
        .min(0)
        .decimals(decimals)
        .color_scheme(color(scheme))
        .reduce_options(last_value())
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .value_mode(common.BarGaugeValueMode.COLOR)
        .name_placement(common.BarGaugeNamePlacement.AUTO)
        .sizing(common.BarGaugeSizing.AUTO)
        .min_viz_height(16)
        .min_viz_width(8)
        .max_viz_height(300)
    )
    return top.with_target(query("A", f"topk(10, {expr})", legend_format, instant=True))


def lines(
    threshold_style: common.GraphThresholdsStyleMode = common.GraphThresholdsStyleMode.OFF,
    *,
    fill: int = 10,
    legend_calcs: list[str] | None = None,
) -> timeseries.Panel:
    """A time series panel of step lines, one legend row per series."""
    return (
        timeseries.Panel()
        .thresholds(green_only())
        .draw_style(common.GraphDrawStyle.LINE)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .line_width(1)
        .fill_opacity(fill)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(threshold_style))
        .color_scheme(color(model.FieldColorModeId.PALETTE_CLASSIC))
        .legend(legend(legend_calcs or ["lastNotNull", "max"]))
        .tooltip(tooltip())
    )


# ---------------------------------------------------------------------------
# Variables and the dashboard itself
# ---------------------------------------------------------------------------


def datasource_variable() -> dashboard_builders.DatasourceVariable:
    """``$datasource``: any Prometheus data source, by default the import input."""
    placeholder = "${" + DS_INPUT + "}"
    return (
        dashboard_builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(model.VariableOption(selected=False, text=placeholder, value=placeholder))
        .regex("")
        .multi(False)
        .include_all(False)
        .hide(model.VariableHide.DONT_HIDE)
    )


def query_variable(name: str, label_values: str) -> dashboard_builders.QueryVariable:
    """A multi-select ``label_values()`` variable with "All" (= ``.+``), refreshed
    when the time range changes."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(name.title())
        .datasource(DATASOURCE)
        .query({"query": label_values, "refId": "StandardVariableQuery"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .options([])
        .regex("")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .hide(model.VariableHide.DONT_HIDE)
    )


def runbook_link(anchor: str = "") -> dashboard_builders.DashboardLink:
    return (
        dashboard_builders.DashboardLink("Runbook")
        .type(model.DashboardLinkType.LINK)
        .url(RUNBOOK + (f"#{anchor}" if anchor else ""))
        .icon("doc")
        .tooltip("What to do when a Nayax EV alert fires")
        .target_blank(True)
        .as_dropdown(False)
        .include_vars(False)
        .keep_time(False)
        .tags([])
    )


def builtin_annotations() -> dashboard_builders.AnnotationQuery:
    return (
        dashboard_builders.AnnotationQuery()
        .built_in(1)
        .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .name("Annotations & Alerts")
        .type("dashboard")
    )


def dashboard(uid: str, title: str, description: str) -> dashboard_builders.Dashboard:
    """A provisioned, generated dashboard: read-only, shared crosshair, browser time."""
    return (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["nayax", "ev-charging", "nayax-ev-exporter"])
        .version(1)
        .readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .timezone("browser")
        .fiscal_year_start_month(0)
        .week_start("")
        .live_now(False)
        .refresh("1m")
        .annotation(builtin_annotations())
    )


def lay_out(built: dashboard_builders.Dashboard, sections: Sequence[Section]) -> None:
    """Add each row, then its panels; every one carries its own grid position."""
    for row_builder, panels in sections:
        built.with_row(row_builder)
        for panel in panels:
            built.with_panel(panel)


def bottom(section: Section) -> int:
    """The first free grid line below a section."""
    row_builder, panels = section
    grids = [row_builder.build().grid_pos, *(panel.build().grid_pos for panel in panels)]
    return max(grid.y + grid.h for grid in grids if grid is not None)


def render(built: dashboard_builders.Dashboard) -> str:
    """The dashboard's JSON, with ``__inputs`` first: the SDK models a dashboard,
    not Grafana's export envelope, so the import input is added here."""
    body: JSON = json.loads(json.dumps(built.build(), cls=JSONEncoder))
    document: JSON = {"__inputs": INPUTS, **body}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
