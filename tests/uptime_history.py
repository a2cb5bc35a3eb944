"""Generated keep-alive histories with known outages, and their minutes counted by
hand, for the uptime report's end-to-end test.

The model is the real chain: a charger sends a keep-alive every 2 minutes while
it is up; the exporter polls its status every 5 minutes and publishes the last
keep-alive it read (a failed poll keeps the old value); Prometheus scrapes the
exporter every minute, and has no sample in its own gaps. Nothing here uses the
report's code: the expected figures are counted minute by minute, the plain way.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

METRIC = "nayax_ev_machine_last_keepalive_timestamp_seconds"
KEEPALIVE_EVERY, KEEPALIVE_PHASE = 120, 7  # the charger: keep-alives at 7 s past every 2nd minute
POLL_EVERY, POLL_PHASE = 300, 13  # the exporter's status poll
SCRAPE_EVERY = 60
LOOKBACK = 300  # Prometheus' default --query.lookback-delta
MINUTE = 60


def at(text: str) -> int:
    """``"2024-02-29T12:00:30"`` (UTC) → epoch seconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


Interval = tuple[int, int]  # [start, end) in epoch seconds


def inside(moment: int, intervals: Sequence[Interval]) -> bool:
    return any(start <= moment < end for start, end in intervals)


@dataclass(frozen=True)
class Scrape:
    """One series as Prometheus stores it: its labels and the scrape phase."""

    labels: tuple[tuple[str, str], ...]
    phase: int  # seconds past the minute at which this scrape happens
    period: Interval  # when this series is scraped at all
    gaps: tuple[Interval, ...] = ()  # this series alone has no sample


@dataclass(frozen=True)
class History:
    actor_id: str
    machine_id: str
    series: tuple[Scrape, ...]
    down: tuple[Interval, ...] = ()  # the charger sends no keep-alive
    exporter_blind: tuple[Interval, ...] = ()  # status polls fail: the value freezes
    gaps: tuple[Interval, ...] = ()  # Prometheus holds no sample
    commissioned: int = 0  # first keep-alive ever
    _cache: dict[int, int | None] = field(default_factory=dict, compare=False, repr=False)

    def last_keepalive(self, moment: int) -> int | None:
        """The charger's last keep-alive at or before ``moment``."""
        candidate = (moment - KEEPALIVE_PHASE) // KEEPALIVE_EVERY * KEEPALIVE_EVERY
        candidate += KEEPALIVE_PHASE
        while candidate >= self.commissioned:
            blocking = [start for start, end in self.down if start <= candidate < end]
            if not blocking:
                return candidate
            start = blocking[0]
            candidate = (start - 1 - KEEPALIVE_PHASE) // KEEPALIVE_EVERY * KEEPALIVE_EVERY
            candidate += KEEPALIVE_PHASE
        return None

    def published(self, moment: int) -> int | None:
        """What the exporter publishes at ``moment``: the keep-alive read by its last
        successful poll."""
        poll = (moment - POLL_PHASE) // POLL_EVERY * POLL_EVERY + POLL_PHASE
        if poll not in self._cache:
            while inside(poll, self.exporter_blind):
                poll -= POLL_EVERY
            self._cache[poll] = self.last_keepalive(poll)
        return self._cache[poll]

    def samples(self, scrape: Scrape) -> Iterator[tuple[int, int]]:
        """(time, value) of one series, in time order."""
        start, end = scrape.period
        first = start - start % SCRAPE_EVERY + scrape.phase
        for moment in range(first if first >= start else first + SCRAPE_EVERY, end, SCRAPE_EVERY):
            if inside(moment, self.gaps) or inside(moment, scrape.gaps):
                continue
            value = self.published(moment)
            if value is not None:
                yield moment, value


def openmetrics(histories: Sequence[History]) -> Iterator[str]:
    """The text for ``promtool tsdb create-blocks-from openmetrics``, in pieces."""
    yield f"# TYPE {METRIC} gauge\n"
    for history in histories:
        for scrape in history.series:
            labels = ",".join(f'{k}="{v}"' for k, v in scrape.labels)
            prefix = f"{METRIC}{{{labels}}} "
            yield "".join(
                f"{prefix}{value} {moment}\n" for moment, value in history.samples(scrape)
            )
    yield "# EOF\n"


@dataclass(frozen=True)
class Expected:
    """One charger's minutes in one period, counted by hand."""

    total: int
    observed: int
    unknown: int
    outage: int
    excluded: int
    excluded_unknown: int

    def __add__(self, other: Expected) -> Expected:
        return Expected(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    def uptime(self, unknown_as_outage: bool = True) -> str:
        """µ = ((T - (outage - excluded)) / T) x 100 in percent, 4 decimals, rounded down."""
        if unknown_as_outage:
            period, downtime = self.total, self.outage + self.unknown - self.excluded
        else:
            period = self.total - self.unknown
            downtime = self.outage - (self.excluded - self.excluded_unknown)
        if period == 0:
            return ""
        scaled = (period - downtime) * 1_000_000 // period
        return f"{scaled // 10_000}.{scaled % 10_000:04d}"


def count_minutes(
    history: History,
    periods: Sequence[Interval],
    excluded: Sequence[Interval],
    threshold: int = 900,
) -> list[Expected]:
    """For each period, its minute instants first, first+60, ..., end-60, one by one."""
    per_series = [list(history.samples(scrape)) for scrape in history.series]
    times = [[moment for moment, _ in samples] for samples in per_series]
    return [_count(per_series, times, period, excluded, threshold) for period in periods]


def _count(
    per_series: list[list[tuple[int, int]]],
    times: list[list[int]],
    period: Interval,
    excluded: Sequence[Interval],
    threshold: int,
) -> Expected:
    """A minute is known when some series has a sample at most LOOKBACK before it,
    communicating when the newest such value is at most ``threshold`` old, excluded
    when it is not communicating and lies in one of ``excluded``."""
    first, end = period
    observed = outage = excluded_known = excluded_unknown = 0
    for minute in range(first, end, MINUTE):
        values = []
        for samples, moments in zip(per_series, times, strict=True):
            index = bisect.bisect_right(moments, minute) - 1  # the latest sample at or before
            if index >= 0 and minute - moments[index] <= LOOKBACK:
                values.append(samples[index][1])
        in_window = inside(minute, excluded)
        if not values:
            excluded_unknown += in_window
            continue
        observed += 1
        if minute - max(values) > threshold:
            outage += 1
            excluded_known += in_window
    total = (end - first) // MINUTE
    return Expected(
        total=total,
        observed=observed,
        unknown=total - observed,
        outage=outage,
        excluded=excluded_known + excluded_unknown,
        excluded_unknown=excluded_unknown,
    )
