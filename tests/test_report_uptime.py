"""Unit tests of the uptime report's pure parts on canned data: months and minutes,
the CFR formula, unknown and excluded minutes, the query plan and its PromQL,
the folding of answers into rows, and the CSV / JSON output."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.report.charger import Charger
from exporter.report.collect import Counts
from exporter.report.excluded import ExcludedWindow, charger_windows
from exporter.report.periods import (
    Minutes,
    Month,
    merge,
    minute_ceiling,
    month_range,
    span_label,
    trailing_twelve,
)
from exporter.report.plan import (
    DEFAULT_MAX_POINTS,
    METRIC,
    FleetSeries,
    Measure,
    Query,
    fleet_from_series,
    plan_queries,
    series_selector,
    window_ranges,
)
from exporter.report.progress import Progress, render_bar
from exporter.report.promapi import PrometheusError, Sample
from exporter.report.render import COLUMNS, spreadsheet_safe, to_csv, to_json
from exporter.report.rows import Row, build_rows, latest_name
from exporter.report.uptime import (
    Tally,
    UnknownMinutes,
    WindowCounts,
    tally_from_counts,
    uptime_percent,
)
from tests.harness import REPO

DAY = 1440
A = Charger("1001", "5001")
B = Charger("1001", "5002")


def epoch(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text + "+00:00").timestamp())


# --- months and minutes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "minutes"),
    [
        ("2024-01", 31 * DAY),
        ("2024-02", 29 * DAY),  # leap year
        ("2023-02", 28 * DAY),
        ("2100-02", 28 * DAY),  # divisible by 100, not by 400: no leap day
        ("2000-02", 29 * DAY),
        ("2024-04", 30 * DAY),
        ("2024-12", 31 * DAY),
    ],
)
def test_a_months_minutes_are_its_days_times_1440(label: str, minutes: int) -> None:
    month = Month.parse(label)
    assert month.label == label
    assert month.minutes == minutes
    assert month_range(month).count == minutes


def test_months_start_at_utc_midnight_and_wrap_around_the_year() -> None:
    december = Month.parse("2023-12")
    assert december.start == epoch("2023-12-01T00:00:00")
    assert december.end == epoch("2024-01-01T00:00:00")
    assert december.next() == Month(2024, 1)
    assert Month(2024, 1).previous() == december


@pytest.mark.parametrize("text", ["2024-13", "2024-00", "24-01", "2024/01", "1969-12", "", "x"])
def test_a_month_must_be_yyyy_mm(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        Month.parse(text)


def test_the_trailing_twelve_months_and_their_minutes() -> None:
    months = trailing_twelve(Month(2024, 6))
    assert [m.label for m in months][:2] == ["2023-07", "2023-08"]
    assert months[-1] == Month(2024, 6)
    assert span_label(months) == "2023-07/2024-06"
    assert sum(m.minutes for m in months) == 527_040  # it holds 29 February 2024
    assert sum(m.minutes for m in trailing_twelve(Month(2025, 6))) == 525_600
    # The leap day leaves the span a year later.
    assert sum(m.minutes for m in trailing_twelve(Month(2025, 2))) == 525_600
    assert sum(m.minutes for m in trailing_twelve(Month(2025, 1))) == 527_040


@pytest.mark.parametrize(
    ("instant", "ceiling"),
    [(600.0, 600), (600.001, 660), (630, 660), (659.999, 660), (0, 0)],
)
def test_a_window_starts_at_the_first_minute_at_or_after_it(instant: float, ceiling: int) -> None:
    assert minute_ceiling(instant) == ceiling


def test_merging_counts_every_minute_once() -> None:
    ranges = [Minutes(600, 1200), Minutes(0, 300), Minutes(900, 1500), Minutes(1500, 1560)]
    assert merge(ranges) == (Minutes(0, 300), Minutes(600, 1560))
    assert merge([Minutes(0, 6000), Minutes(60, 120)]) == (Minutes(0, 6000),)
    assert merge([]) == ()


def test_minutes_must_be_whole_minutes() -> None:
    with pytest.raises(ValueError):
        Minutes(30, 120)
    with pytest.raises(ValueError):
        Minutes(120, 60)
    assert Minutes(0, 600).clip(Minutes(300, 900)) == Minutes(300, 600)
    assert Minutes(0, 600).clip(Minutes(600, 900)) is None


# --- the formula ------------------------------------------------------------------


def test_the_cfr_formula_with_525600_minutes() -> None:
    # 5,000 outage minutes, 1,000 of them excluded: (525600 - 4000) / 525600 = 99.23896...%
    year = Tally(525_600, 525_600, 520_600, excluded_known=1_000)
    assert year.outage == 5_000 and year.excluded == 1_000
    assert uptime_percent(year, UnknownMinutes.OUTAGE) == Decimal("99.2389")  # down, not 99.2390


def test_uptime_is_rounded_down_never_up() -> None:
    one_minute_down = Tally(525_600, 525_600, 525_599)
    assert uptime_percent(one_minute_down, UnknownMinutes.OUTAGE) == Decimal("99.9998")
    assert uptime_percent(Tally(44_640, 44_640, 44_640), UnknownMinutes.OUTAGE) == Decimal(
        "100.0000"
    )
    assert uptime_percent(Tally(44_640, 44_640, 0), UnknownMinutes.OUTAGE) == Decimal("0.0000")
    # 1 minute down of 43,200: 99.99768...% → 99.9976 (rounding half-up would say 99.9977)
    assert uptime_percent(Tally(43_200, 43_200, 43_199), UnknownMinutes.OUTAGE) == Decimal(
        "99.9976"
    )


def test_unknown_minutes_count_as_outage_unless_told_otherwise() -> None:
    # 30 days; 1,440 minutes without data; 60 outage minutes among the 41,760 known ones.
    month = Tally(43_200, 41_760, 41_700)
    assert month.unknown == 1_440 and month.outage == 60 and month.observed == 41_760
    assert uptime_percent(month, UnknownMinutes.OUTAGE) == Decimal("96.5277")  # 41700/43200
    assert uptime_percent(month, UnknownMinutes.EXCLUDE) == Decimal("99.8563")  # 41700/41760


def test_excluded_unknown_minutes_are_not_downtime() -> None:
    # The 1,440 unknown minutes fall in a declared grid outage; 20 outage minutes too.
    month = Tally(43_200, 41_760, 41_700, excluded_known=20, excluded_unknown=1_440)
    assert month.excluded == 1_460
    # (43200 - (60 + 1440 - 1460)) / 43200
    assert uptime_percent(month, UnknownMinutes.OUTAGE) == Decimal("99.9074")
    # (41760 - (60 - 20)) / 41760
    assert uptime_percent(month, UnknownMinutes.EXCLUDE) == Decimal("99.9042")


def test_a_period_without_a_known_minute_has_no_uptime_when_unknown_is_excluded() -> None:
    nothing = Tally(44_640, 0, 0)
    assert uptime_percent(nothing, UnknownMinutes.EXCLUDE) is None
    assert uptime_percent(nothing, UnknownMinutes.OUTAGE) == Decimal("0.0000")
    excused = Tally(44_640, 0, 0, excluded_unknown=44_640)  # all of it excluded
    assert uptime_percent(excused, UnknownMinutes.OUTAGE) == Decimal("100.0000")


@pytest.mark.parametrize(
    "counts",
    [
        (100, 101, 0),  # more known than the period
        (100, 50, 51),  # more communicating than known
        (100, 50, -1),
    ],
)
def test_inconsistent_counts_are_refused(counts: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        Tally(*counts)


def test_excluded_minutes_cannot_exceed_the_outage_or_unknown_ones() -> None:
    with pytest.raises(ValueError):
        Tally(100, 100, 90, excluded_known=11)
    with pytest.raises(ValueError):
        Tally(100, 90, 90, excluded_unknown=11)


def test_window_counts_become_excluded_outage_and_unknown_minutes() -> None:
    # 120 window minutes: 100 known (70 communicating, 30 outage), 20 unknown.
    tally = tally_from_counts(44_640, 44_000, 43_000, WindowCounts(120, 100, 70))
    assert (tally.excluded_known, tally.excluded_unknown, tally.excluded) == (30, 20, 50)
    assert tally_from_counts(44_640, 44_000, 43_000).excluded == 0


def test_the_year_is_the_sum_of_its_months() -> None:
    january = Tally(44_640, 44_640, 44_600, excluded_known=10)
    february = Tally(41_760, 41_000, 41_000, excluded_unknown=60)
    year = january + february
    assert year == Tally(86_400, 85_640, 85_600, 10, 60)
    assert (year.outage, year.unknown, year.excluded) == (40, 760, 70)


# --- excluded windows per charger --------------------------------------------------


def window(
    start: str, end: str, actor: str | None = None, machine: str | None = None
) -> ExcludedWindow:
    return ExcludedWindow(epoch(start), epoch(end), "reason", actor, machine, "excluded[0]")


def test_fleet_actor_and_charger_windows_are_merged_per_charger() -> None:
    windows = [
        window("2024-03-01T10:00:00", "2024-03-01T12:00:00"),  # fleet-wide
        window("2024-03-01T11:00:00", "2024-03-01T13:00:00", "1001", "5001"),  # overlaps it
        window("2024-03-02T00:00:00", "2024-03-02T01:00:00", "1001"),  # the actor
        window("2024-03-03T00:00:00", "2024-03-03T01:00:00", "2002"),  # another actor
    ]
    assert charger_windows(windows, A) == (
        Minutes(epoch("2024-03-01T10:00:00"), epoch("2024-03-01T13:00:00")),
        Minutes(epoch("2024-03-02T00:00:00"), epoch("2024-03-02T01:00:00")),
    )
    assert charger_windows(windows, B) == (
        Minutes(epoch("2024-03-01T10:00:00"), epoch("2024-03-01T12:00:00")),
        Minutes(epoch("2024-03-02T00:00:00"), epoch("2024-03-02T01:00:00")),
    )


def test_a_window_holds_the_minutes_that_start_inside_it() -> None:
    odd = ExcludedWindow(
        epoch("2024-03-01T10:00:00") + 30.5,
        epoch("2024-03-01T10:05:00") + 1,
        "r",
        None,
        None,
        "excluded[0]",
    )
    # 10:01, 10:02, 10:03, 10:04, 10:05 start inside [10:00:30.5, 10:05:01)
    assert odd.minutes == Minutes(epoch("2024-03-01T10:01:00"), epoch("2024-03-01T10:06:00"))
    within_a_minute = ExcludedWindow(600.5, 659.0, "r", None, None, "excluded[0]")
    assert within_a_minute.minutes is None


# --- the plan ------------------------------------------------------------------------


def member(machine: str, series: int = 1, names: tuple[str, ...] = ("x",)) -> FleetSeries:
    return FleetSeries(Charger("1001", machine), series, names)


def test_the_fleet_is_read_from_the_series_listing() -> None:
    listing = [
        {"__name__": METRIC, "actor_id": "1001", "machine_id": "10", "machine": "Ten"},
        {"__name__": METRIC, "actor_id": "1001", "machine_id": "9", "machine": "Nine"},
        {"__name__": METRIC, "actor_id": "1001", "machine_id": "9", "machine": "Nine (new)"},
        {"__name__": METRIC, "actor_id": "1001", "machine_id": "10", "machine": "Ten", "job": "b"},
        {"__name__": METRIC, "machine_id": "11"},  # not the exporter's: no actor_id
    ]
    fleet, skipped = fleet_from_series(listing)
    assert skipped == 1
    assert [f.charger.machine_id for f in fleet] == ["9", "10"]  # numeric order
    nine, ten = fleet
    assert nine.series == 2 and nine.renamed and nine.merged
    assert ten.series == 2 and not ten.renamed and ten.merged  # scraped twice, one name
    assert ten.names == ("Ten",)


def test_the_promql_counts_known_and_communicating_minutes_of_one_month() -> None:
    march = Month(2024, 3)
    plain = Query(Measure.KNOWN, march, month_range(march), False, (A, B), False, 2)
    selector = f'{METRIC}{{actor_id="1001",machine_id=~"5001|5002"}}'
    assert plain.promql(900) == f"count_over_time(({selector})[2678400s:60s])"
    assert plain.at == march.end - 1  # the subquery's steps: the month's 44,640 minutes
    communicating = Query(Measure.COMMUNICATING, march, month_range(march), False, (A,), False, 1)
    assert communicating.promql(600) == (
        f'count_over_time(({METRIC}{{actor_id="1001",machine_id="5001"}} >= time() - 600)'
        "[2678400s:60s])"
    )
    merged = Query(Measure.COMMUNICATING, march, month_range(march), False, (A,), True, 3)
    assert merged.promql(900).startswith("count_over_time((max by (actor_id, machine_id) (")
    presence = Query(Measure.PRESENCE, march, month_range(march), False, (A,), True, 3)
    assert presence.promql(900) == (
        "max by (actor_id, machine_id, machine) (max_over_time(("
        f'{METRIC}{{actor_id="1001",machine_id="5001"}} * 0 + time())[2678400s:60s]))'
    )


def test_label_values_are_quoted_and_escaped_for_the_regex() -> None:
    odd = [Charger('a"b', "1.5|x"), Charger("c\\d", "(2)")]
    selector = series_selector(odd)
    # RE2 escapes (\. \| \( \\), then PromQL's string escapes (\" \\); values sorted.
    assert selector == METRIC + r'{actor_id=~"a\"b|c\\\\d",machine_id=~"\\(2\\)|1\\.5\\|x"}'


def test_every_query_stays_within_the_points_budget() -> None:
    fleet = [member(str(i)) for i in range(10)] + [member("99", series=3, names=("a", "b"))]
    budget = 3 * 44_640  # three single-series chargers for a 31-day month
    queries = plan_queries(fleet, [Month(2024, 3)], {}, budget)
    known = [q for q in queries if q.measure is Measure.KNOWN]
    assert [len(q.chargers) for q in known] == [3, 3, 3, 1, 1]  # the merged one alone
    assert all(q.series * q.minutes.count <= budget for q in queries)
    assert [q.merged for q in known] == [False, False, False, False, True]
    presence = [q for q in queries if q.measure is Measure.PRESENCE]
    assert [q.chargers for q in presence] == [(Charger("1001", "99"),)]
    # Each charger is counted by exactly one known and one communicating query.
    for measure in (Measure.KNOWN, Measure.COMMUNICATING):
        counted = [c for q in queries if q.measure is measure for c in q.chargers]
        assert sorted(counted, key=lambda c: c.sort_key) == [f.charger for f in fleet]


def test_a_charger_over_the_budget_still_gets_its_query() -> None:
    queries = plan_queries([member("1", series=5)], [Month(2024, 3)], {}, 44_640)
    assert [len(q.chargers) for q in queries] == [1, 1]


def test_the_plan_for_10000_chargers_over_a_year() -> None:
    """The figures docs/uptime-report.md quotes."""
    fleet = [member(str(i)) for i in range(10_000)]
    queries = plan_queries(fleet, trailing_twelve(Month(2025, 12)), {}, DEFAULT_MAX_POINTS)
    assert len(queries) == 2_118
    assert max(q.series * q.minutes.count for q in queries) <= DEFAULT_MAX_POINTS
    sent = sum(len(q.promql(900)) for q in queries)
    assert 1_350_000 < sent < 1_450_000  # "about 1.4 MB of PromQL"
    documented = " ".join((REPO / "docs" / "uptime-report.md").read_text().split())
    assert "**2,118 queries** of at most 5,000,000 points, about 1.4 MB of PromQL" in documented


def test_a_window_across_months_is_counted_in_each_month() -> None:
    fleet = [member("5001"), member("5002")]
    across = Minutes(epoch("2024-01-31T23:00:00"), epoch("2024-02-01T01:00:00"))
    fleet_wide = Minutes(epoch("2024-02-10T00:00:00"), epoch("2024-02-10T02:00:00"))
    windows = {A: (across, fleet_wide), B: (fleet_wide,)}
    january = window_ranges(fleet, Month(2024, 1), windows)
    assert {r: [m.charger for m in ms] for r, ms in january.items()} == {
        Minutes(across.start, epoch("2024-02-01T00:00:00")): [A]
    }
    february = window_ranges(fleet, Month(2024, 2), windows)
    assert {r: [m.charger for m in ms] for r, ms in february.items()} == {
        Minutes(epoch("2024-02-01T00:00:00"), across.end): [A],
        fleet_wide: [A, B],  # one range, both chargers: shared queries
    }
    queries = plan_queries(fleet, [Month(2024, 2)], windows)
    in_window = [q for q in queries if q.in_window]
    assert len(in_window) == 4  # two ranges x (known, communicating)
    assert all(q.at == q.minutes.end - 1 for q in in_window)


# --- answers → counts → rows --------------------------------------------------------


def test_answers_for_pairs_outside_the_group_are_dropped() -> None:
    march = Month(2024, 3)
    query = Query(Measure.KNOWN, march, month_range(march), False, (A,), False, 1)
    counts = Counts()
    counts.add(
        query,
        [
            Sample({"actor_id": "1001", "machine_id": "5001", "machine": "x"}, 44_000.0),
            Sample({"actor_id": "2002", "machine_id": "5001"}, 7.0),  # same id, other actor
        ],
    )
    assert dict(counts.minutes) == {(Measure.KNOWN, march, False, A): 44_000}


def test_a_second_series_where_the_listing_showed_one_is_an_error() -> None:
    march = Month(2024, 3)
    query = Query(Measure.KNOWN, march, month_range(march), False, (A,), False, 1)
    twice = [
        Sample({"actor_id": "1001", "machine_id": "5001", "job": "a"}, 10.0),
        Sample({"actor_id": "1001", "machine_id": "5001", "job": "b"}, 10.0),
    ]
    with pytest.raises(PrometheusError, match="more series than the listing"):
        Counts().add(query, twice)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 44_641.0])
def test_an_implausible_count_is_an_error(value: float) -> None:
    march = Month(2024, 3)
    query = Query(Measure.KNOWN, march, month_range(march), False, (A,), False, 1)
    with pytest.raises(PrometheusError, match="for a count"):
        Counts().add(query, [Sample({"actor_id": "1001", "machine_id": "5001"}, value)])


def test_counts_that_contradict_each_other_are_an_error_not_a_row() -> None:
    march = Month(2024, 3)
    counts = Counts()
    counts.minutes[(Measure.KNOWN, march, False, A)] = 100
    counts.minutes[(Measure.COMMUNICATING, march, False, A)] = 101  # the data changed between
    with pytest.raises(PrometheusError, match="2024-03: inconsistent minute counts"):
        build_rows([FleetSeries(A, 1, ("x",))], [march], counts, {}, UnknownMinutes.OUTAGE)


def test_a_renamed_charger_takes_the_label_it_was_last_seen_with() -> None:
    renamed = FleetSeries(A, 2, ("Depot 1", "Depot One"))
    counts = Counts()
    for month, seen in (
        (Month(2024, 2), {"Depot 1": 200.0, "Depot One": 100.0}),
        (Month(2024, 3), {"Depot 1": 300.0, "Depot One": 400.0}),
    ):
        query = Query(Measure.PRESENCE, month, month_range(month), False, (A,), True, 2)
        counts.add(
            query,
            [
                Sample({"actor_id": "1001", "machine_id": "5001", "machine": n}, t)
                for n, t in seen.items()
            ],
        )
    assert latest_name(renamed, counts) == "Depot One"
    tie = Counts()
    query = Query(
        Measure.PRESENCE, Month(2024, 3), month_range(Month(2024, 3)), False, (A,), True, 2
    )
    tie.add(
        query,
        [
            Sample({"actor_id": "1001", "machine_id": "5001", "machine": n}, 5.0)
            for n in ("Depot One", "Depot 1")
        ],
    )
    assert latest_name(renamed, tie) == "Depot One"  # the alphabetically last, every run
    assert latest_name(FleetSeries(B, 1, ("Only",)), Counts()) == "Only"


def test_rows_per_month_then_the_trailing_row_with_excluded_windows() -> None:
    months = trailing_twelve(Month(2024, 6))
    counts = Counts()
    for month in months:
        counts.minutes[(Measure.KNOWN, month, False, A)] = month.minutes
        counts.minutes[(Measure.COMMUNICATING, month, False, A)] = month.minutes - 10
    window = Minutes(epoch("2024-06-01T00:00:00"), epoch("2024-06-01T01:00:00"))
    counts.minutes[(Measure.KNOWN, Month(2024, 6), True, A)] = 60
    counts.minutes[(Measure.COMMUNICATING, Month(2024, 6), True, A)] = 55
    fleet = [FleetSeries(A, 1, ("Depot 1",)), FleetSeries(B, 1, ("Never seen",))]
    rows = build_rows(fleet, months, counts, {A: (window,)}, UnknownMinutes.OUTAGE)
    assert len(rows) == 13  # B has no known minute in the span: left out
    june, year = rows[-2], rows[-1]
    assert june.period == "2024-06" and june.tally.excluded == 5 and june.tally.outage == 10
    assert june.uptime_percent == Decimal("99.9884")  # (43200 - 5) / 43200
    assert year.period == "2023-07/2024-06"
    assert year.tally.total == 527_040 and year.tally.outage == 120 and year.tally.excluded == 5
    assert year.uptime_percent == Decimal("99.9781")  # (527040 - 115) / 527040


# --- output -------------------------------------------------------------------------


def sample_rows() -> list[Row]:
    tally = Tally(44_640, 44_000, 43_900, excluded_known=50, excluded_unknown=40)
    return [
        Row(A, "Depot North, bay 1", "2024-03", tally, Decimal("99.6415")),
        Row(B, '=HYPERLINK("http://evil")', "2024-03", Tally(44_640, 0, 0), None),
    ]


def test_csv_has_the_columns_and_rfc4180_quoting() -> None:
    text = to_csv(sample_rows())
    assert text.startswith(",".join(COLUMNS) + "\r\n")
    assert text.splitlines()[1] == '1001,5001,"Depot North, bay 1",2024-03,44000,640,100,90,99.6415'
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[0]["machine"] == "Depot North, bay 1"
    assert rows[1]["machine"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert rows[1]["uptime_percent"] == ""


@pytest.mark.parametrize(
    ("text", "safe"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM", "'@SUM"), ("Depot", "Depot")],
)
def test_formula_starts_are_defused(text: str, safe: str) -> None:
    assert spreadsheet_safe(text) == safe


def test_json_rows_carry_numbers_and_null() -> None:
    document = json.loads(to_json(sample_rows(), {"last_month": "2024-03"}))
    assert document["parameters"] == {"last_month": "2024-03"}
    first, second = document["rows"]
    assert list(first) == list(COLUMNS)
    assert first["uptime_percent"] == 99.6415 and first["observed_minutes"] == 44_000
    assert second["uptime_percent"] is None
    assert second["machine"] == '=HYPERLINK("http://evil")'  # JSON is data, kept as is


# --- the progress bar ---------------------------------------------------------------


def test_the_bar_says_how_far_and_how_long() -> None:
    assert render_bar(0, 10, 0.0, width=10) == "[----------]   0%  0/10 queries"
    assert render_bar(5, 10, 30.0, width=10) == "[#####-----]  50%  5/10 queries  30s left"
    assert render_bar(10, 10, 60.0, width=10) == "[##########] 100%  10/10 queries"
    assert render_bar(1, 100, 75.0, width=10).endswith("2h3m45s left")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bar_is_drawn_only_when_enabled_and_wiped_at_the_end() -> None:
    quiet = io.StringIO()
    progress = Progress(quiet, enabled=False)
    progress.start(3)
    progress.advance()
    progress.finish()
    assert quiet.getvalue() == ""
    assert Progress(io.StringIO()).enabled is False  # a StringIO is no terminal

    shown, clock = io.StringIO(), Clock()
    progress = Progress(shown, enabled=True, clock=clock)
    progress.start(3)
    progress.advance()  # within 0.1 s of the last drawing: skipped
    clock.now = 2.0
    progress.advance()
    clock.now = 2.01
    progress.advance()  # the last one is always drawn
    progress.finish()
    drawn = shown.getvalue().split("\r")
    assert [re.sub(r"\s+$", "", d) for d in drawn[1:4]] == [
        "[------------------------------]   0%  0/3 queries",
        "[####################----------]  67%  2/3 queries  1s left",
        "[##############################] 100%  3/3 queries",
    ]
    assert drawn[-1] == "" and drawn[-2].strip() == ""  # blanked, cursor at the start


# --- properties ---------------------------------------------------------------------

_minute_ranges = st.lists(
    st.tuples(st.integers(0, 200), st.integers(1, 50)).map(
        lambda p: Minutes(p[0] * 60, (p[0] + p[1]) * 60)
    ),
    max_size=8,
)


@given(_minute_ranges)
def test_merged_ranges_cover_the_same_minutes_once(ranges: list[Minutes]) -> None:
    merged = merge(ranges)
    covered = {m for r in ranges for m in range(r.start, r.end, 60)}
    assert sum(r.count for r in merged) == len(covered)
    assert all(a.end < b.start for a, b in itertools.pairwise(merged))


@given(
    fleet=st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 3)),
        min_size=1,
        max_size=25,
        unique_by=lambda t: (t[0], t[1]),
    ),
    per_query=st.integers(1, 6),
    windows=st.dictionaries(st.integers(1, 40), _minute_ranges, max_size=5),
)
@settings(max_examples=60, deadline=None)
def test_the_plan_counts_every_charger_once_per_month_and_range(
    fleet: list[tuple[int, int, int]], per_query: int, windows: dict[int, list[Minutes]]
) -> None:
    """Whatever the fleet, budget and windows: one known and one communicating
    query per charger and range, within the budget, presence for renamed ones."""
    members = [
        FleetSeries(Charger(str(a), str(m)), series, tuple(f"n{i}" for i in range(series)))
        for a, m, series in fleet
    ]
    month = Month(2024, 2)
    whole = month_range(month)
    excluded = {  # ranges scaled to spread over (and past the end of) the month
        f.charger: merge(
            [
                Minutes(month.start + r.start * 200, month.start + r.end * 200)
                for r in windows.get(int(f.charger.machine_id), [])
            ]
        )
        for f in members
    }
    budget = per_query * month.minutes
    queries = plan_queries(members, [month], excluded, budget)
    expected = {
        (f.charger, inside)
        for f in members
        for r in [whole, *excluded[f.charger]]
        if (inside := r.clip(whole)) is not None
    }
    for measure in (Measure.KNOWN, Measure.COMMUNICATING):
        counted = [(c, q.minutes) for q in queries if q.measure is measure for c in q.chargers]
        assert sorted(map(str, counted)) == sorted(map(str, expected))
    for query in queries:
        assert len(query.chargers) == 1 or query.series * query.minutes.count <= budget
        assert query.merged == any(f.merged for f in members if f.charger in query.chargers)
    renamed = {f.charger for f in members if f.renamed}
    presence = [c for q in queries if q.measure is Measure.PRESENCE for c in q.chargers]
    assert sorted(map(str, presence)) == sorted(map(str, renamed))


@given(
    total=st.integers(1, 600_000),
    known=st.floats(0, 1),
    communicating=st.floats(0, 1),
    excluded=st.floats(0, 1),
)
def test_uptime_is_the_exact_fraction_rounded_down(
    total: int, known: float, communicating: float, excluded: float
) -> None:
    k = int(total * known)
    c = int(k * communicating)
    tally = Tally(total, k, c, excluded_known=int((k - c) * excluded))
    percent = uptime_percent(tally, UnknownMinutes.OUTAGE)
    assert percent is not None
    exact = Decimal(total - (tally.outage + tally.unknown - tally.excluded)) * 100 / total
    assert Decimal(0) <= percent <= exact < percent + Decimal("0.0001")
