"""Counts → report rows: twelve month rows and one trailing row per charger. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from exporter.report.charger import Charger
from exporter.report.collect import Counts
from exporter.report.periods import Minutes, Month, month_range, span_label
from exporter.report.plan import FleetSeries, Measure
from exporter.report.promapi import PrometheusError
from exporter.report.uptime import (
    Tally,
    UnknownMinutes,
    WindowCounts,
    tally_from_counts,
    uptime_percent,
)


@dataclass(frozen=True)
class Row:
    charger: Charger
    machine: str  # the latest display label
    period: str  # ``2024-02``, or ``2023-03/2024-02`` for the trailing twelve months
    tally: Tally
    uptime_percent: Decimal | None


def build_rows(
    fleet: Sequence[FleetSeries],
    months: Sequence[Month],
    counts: Counts,
    windows: Mapping[Charger, tuple[Minutes, ...]],
    unknown: UnknownMinutes,
) -> list[Row]:
    """Chargers in the fleet's order, months oldest first, the trailing row last.
    A charger without one known minute in the span (its series ended just before
    it) is left out."""
    rows: list[Row] = []
    for member in fleet:
        charger = member.charger
        tallies = [_tally(counts, windows, charger, month) for month in months]
        if not any(t.known for t in tallies):
            continue
        name = latest_name(member, counts)
        for month, tally in zip(months, tallies, strict=True):
            rows.append(Row(charger, name, month.label, tally, uptime_percent(tally, unknown)))
        year = sum(tallies[1:], tallies[0])
        rows.append(
            Row(charger, name, span_label(tuple(months)), year, uptime_percent(year, unknown))
        )
    return rows


def latest_name(member: FleetSeries, counts: Counts) -> str:
    """The ``machine`` label of the charger's latest sample (a renamed charger is
    one charger); a tie between labels seen at the same last minute goes to the
    alphabetically last, so the choice is stable."""
    if not member.renamed:
        return member.names[0]
    seen = counts.latest_name.get(member.charger)
    return seen[1] if seen is not None else member.names[-1]


def _tally(
    counts: Counts, windows: Mapping[Charger, tuple[Minutes, ...]], charger: Charger, month: Month
) -> Tally:
    def count(measure: Measure, in_window: bool) -> int:
        return counts.minutes.get((measure, month, in_window, charger), 0)

    whole = month_range(month)
    inside = [r.clip(whole) for r in windows.get(charger, ())]
    excluded = sum(r.count for r in inside if r is not None)
    try:
        window = (
            WindowCounts(excluded, count(Measure.KNOWN, True), count(Measure.COMMUNICATING, True))
            if excluded
            else None
        )
        return tally_from_counts(
            month.minutes, count(Measure.KNOWN, False), count(Measure.COMMUNICATING, False), window
        )
    except ValueError as exc:  # separate queries disagree: the stored data changed meanwhile
        raise PrometheusError(
            f"{charger}, {month.label}: {exc}; did its data change during the report? Run it again"
        ) from None
