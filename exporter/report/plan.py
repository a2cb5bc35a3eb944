"""Which PromQL queries count the minutes, and how many series each may touch. Pure.

Prometheus counts; the report never pulls raw samples. For one set of chargers
and one range of minutes, an instant query evaluated at the range's last
instant (``end - 1 s``) runs a 1-minute subquery over exactly those minute
instants and returns one number per charger:

- known: ``count_over_time(k[R:1m])`` — minutes at which the series has a sample
  (Prometheus' own instant semantics: the latest sample within the server's
  lookback delta, 5 m by default, and none after a staleness marker);
- communicating: ``count_over_time((k >= time() - 900)[R:1m])`` — minutes whose
  instant is at most the threshold after the last keep-alive;
- presence (renamed chargers only): the last minute each ``machine`` label was seen.

A charger with one series in the span is queried as is; one with several (a
renamed charger, two exporters scraped) through ``max by (actor_id, machine_id)``,
so that a minute seen twice counts once. That aggregation costs Prometheus
several times the CPU (docs/performance.md), hence the two classes.

Each query covers one month (or one excluded range inside it) and as many
chargers as keep ``series x minutes`` within the points budget, which keeps the
samples a subquery holds while it runs well under the server's
``--query.max-samples`` (figures: docs/performance.md).
"""

from __future__ import annotations

import enum
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from exporter.report.charger import Charger
from exporter.report.periods import MINUTE, Minutes, Month, month_range

METRIC = "nayax_ev_machine_last_keepalive_timestamp_seconds"
DEFAULT_MAX_POINTS = 5_000_000
MIN_MAX_POINTS = 44_640  # one series for the longest month
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


class Measure(enum.Enum):
    KNOWN = "known"
    COMMUNICATING = "communicating"
    PRESENCE = "presence"


@dataclass(frozen=True)
class FleetSeries:
    """A charger as the span's series listing shows it."""

    charger: Charger
    series: int  # label sets (series) with samples in the span
    names: tuple[str, ...]  # its distinct ``machine`` labels, sorted

    @property
    def merged(self) -> bool:
        return self.series > 1

    @property
    def renamed(self) -> bool:
        return len(self.names) > 1


@dataclass(frozen=True)
class Query:
    measure: Measure
    month: Month
    minutes: Minutes  # the evaluated minute instants: the month or an excluded range
    in_window: bool  # counts into the month's excluded-window figures
    chargers: tuple[Charger, ...]
    merged: bool  # several series per charger, combined per minute
    series: int  # how many series it touches (for the budget)

    @property
    def at(self) -> int:
        """Evaluation time: within the last minute, so the subquery's first step is
        ``minutes.start`` and its last ``minutes.end - 60`` in every Prometheus version
        (2.x ranges are closed, 3.x left-open)."""
        return self.minutes.end - 1

    def promql(self, threshold: int) -> str:
        selector = series_selector(self.chargers)
        if self.merged:
            selector = f"max by (actor_id, machine_id) ({selector})"
        window = f"[{self.minutes.end - self.minutes.start}s:{MINUTE}s]"
        if self.measure is Measure.KNOWN:
            return f"count_over_time(({selector}){window})"
        if self.measure is Measure.COMMUNICATING:
            return f"count_over_time(({selector} >= time() - {threshold}){window})"
        presence = f"max_over_time(({series_selector(self.chargers)} * 0 + time()){window})"
        return f"max by (actor_id, machine_id, machine) ({presence})"


def fleet_from_series(label_sets: Iterable[Mapping[str, str]]) -> tuple[list[FleetSeries], int]:
    """The chargers of a series listing, sorted, and how many series lacked an
    ``actor_id`` or ``machine_id`` (not the exporter's: skipped). Pure."""
    counts: dict[Charger, int] = defaultdict(int)
    names: dict[Charger, set[str]] = defaultdict(set)
    skipped = 0
    for labels in label_sets:
        actor_id, machine_id = labels.get("actor_id", ""), labels.get("machine_id", "")
        if not actor_id or not machine_id:
            skipped += 1
            continue
        charger = Charger(actor_id, machine_id)
        counts[charger] += 1
        names[charger].add(labels.get("machine") or machine_id)
    fleet = [FleetSeries(c, counts[c], tuple(sorted(names[c]))) for c in counts]
    return sorted(fleet, key=lambda f: f.charger.sort_key), skipped


def plan_queries(
    fleet: Sequence[FleetSeries],
    months: Sequence[Month],
    windows: Mapping[Charger, tuple[Minutes, ...]],
    max_points: int = DEFAULT_MAX_POINTS,
) -> tuple[Query, ...]:
    """Every query the report needs, month by month. Pure."""
    queries: list[Query] = []
    for month in months:
        whole = month_range(month)
        queries += _counting(fleet, month, whole, False, max_points)
        renamed = [f for f in fleet if f.renamed]
        queries += (
            _query(Measure.PRESENCE, month, whole, False, group)
            for group in _groups(renamed, whole.count, max_points)
        )
        for minutes, members in window_ranges(fleet, month, windows).items():
            queries += _counting(members, month, minutes, True, max_points)
    return tuple(queries)


def window_ranges(
    fleet: Sequence[FleetSeries], month: Month, windows: Mapping[Charger, tuple[Minutes, ...]]
) -> dict[Minutes, list[FleetSeries]]:
    """Each excluded range inside ``month`` → the chargers it applies to (chargers
    sharing a range, a fleet-wide window, share its queries). Pure."""
    ranges: dict[Minutes, list[FleetSeries]] = defaultdict(list)
    whole = month_range(month)
    for member in fleet:
        for excluded in windows.get(member.charger, ()):
            inside = excluded.clip(whole)
            if inside is not None:
                ranges[inside].append(member)
    return dict(sorted(ranges.items()))


def _counting(
    members: Sequence[FleetSeries], month: Month, minutes: Minutes, in_window: bool, budget: int
) -> Iterator[Query]:
    for merged in (False, True):
        same_class = [m for m in members if m.merged is merged]
        for group in _groups(same_class, minutes.count, budget):
            for measure in (Measure.KNOWN, Measure.COMMUNICATING):
                yield _query(measure, month, minutes, in_window, group)


def _query(
    measure: Measure, month: Month, minutes: Minutes, in_window: bool, group: list[FleetSeries]
) -> Query:
    return Query(
        measure=measure,
        month=month,
        minutes=minutes,
        in_window=in_window,
        chargers=tuple(m.charger for m in group),
        merged=any(m.merged for m in group),
        series=sum(m.series for m in group),
    )


def _groups(
    members: Sequence[FleetSeries], minutes: int, budget: int
) -> Iterator[list[FleetSeries]]:
    """Consecutive chargers (so a group spans few actors) while series x minutes
    stays within the budget; a charger alone over it still gets its own query."""
    group: list[FleetSeries] = []
    points = 0
    for member in members:
        cost = member.series * minutes
        if group and points + cost > budget:
            yield group
            group, points = [], 0
        group.append(member)
        points += cost
    if group:
        yield group


def series_selector(chargers: Sequence[Charger]) -> str:
    """``METRIC{actor_id=~"a|b",machine_id=~"1|2"}``: may also match other pairs
    of these actors and machines, which the caller drops from the result."""
    actors = sorted({c.actor_id for c in chargers})
    machines = sorted({c.machine_id for c in chargers})
    return f"{METRIC}{{{_matcher('actor_id', actors)},{_matcher('machine_id', machines)}}}"


def _matcher(label: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f"{label}={_promql_string(values[0])}"
    pattern = "|".join(_RE2_SPECIAL.sub(r"\\\1", value) for value in values)
    return f"{label}=~{_promql_string(pattern)}"


def _promql_string(text: str) -> str:
    """A double-quoted PromQL string (JSON's escapes are a subset of PromQL's)."""
    return json.dumps(text, ensure_ascii=False)
