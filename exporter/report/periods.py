"""Months, minutes and instants of the uptime report. Pure.

A *minute* is identified by the UTC instant it starts at (a multiple of 60 s
since the epoch); a month's minutes are the instants from its first midnight up
to, not including, the next month's: days x 1440 of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

MINUTE = 60
_MONTH_TEXT = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month in UTC."""

    year: int
    month: int

    @staticmethod
    def parse(text: str) -> Month:
        """``"2024-02"`` → Month(2024, 2); ValueError naming the expected form."""
        match = _MONTH_TEXT.fullmatch(text.strip())
        if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
            raise ValueError(f"{text!r} is not a month in the form YYYY-MM (1970 or later)")
        return Month(int(match.group(1)), int(match.group(2)))

    @staticmethod
    def containing(moment: datetime) -> Month:
        utc = moment.astimezone(UTC)
        return Month(utc.year, utc.month)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> int:
        """Epoch seconds of the month's first instant."""
        return int(datetime(self.year, self.month, 1, tzinfo=UTC).timestamp())

    @property
    def end(self) -> int:
        """Epoch seconds of the next month's first instant (exclusive end)."""
        return self.next().start

    @property
    def minutes(self) -> int:
        return (self.end - self.start) // MINUTE

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)


def trailing_twelve(last: Month) -> tuple[Month, ...]:
    """The twelve months ending with ``last``, oldest first."""
    months = [last]
    while len(months) < 12:
        months.append(months[-1].previous())
    return tuple(reversed(months))


def span_label(months: tuple[Month, ...]) -> str:
    """The ``month`` column of a trailing row: ``2023-07/2024-06`` (ISO 8601 interval)."""
    return f"{months[0].label}/{months[-1].label}"


def minute_ceiling(instant: float) -> int:
    """The first minute instant at or after ``instant``."""
    whole = int(instant)
    if whole < instant:
        whole += 1
    return -(-whole // MINUTE) * MINUTE


@dataclass(frozen=True, order=True)
class Minutes:
    """The minute instants ``start, start+60, ..., end-60`` (both multiples of 60)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start % MINUTE or self.end % MINUTE or self.end < self.start:
            raise ValueError(f"not a minute range: {self.start}..{self.end}")

    @property
    def count(self) -> int:
        return (self.end - self.start) // MINUTE

    def clip(self, other: Minutes) -> Minutes | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Minutes(start, end) if start < end else None


def month_range(month: Month) -> Minutes:
    return Minutes(month.start, month.end)


def merge(ranges: list[Minutes]) -> tuple[Minutes, ...]:
    """Overlapping or touching ranges joined, sorted: every minute counted once."""
    merged: list[Minutes] = []
    for current in sorted(ranges):
        if merged and current.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Minutes(last.start, max(last.end, current.end))
        else:
            merged.append(current)
    return tuple(merged)


def format_instant(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
