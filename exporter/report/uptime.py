"""The minutes of one charger over one period, and its uptime. Pure.

Every minute of a period is, for one charger, *unknown* (Prometheus holds no
sample of the charger's keep-alive series at that minute), *communicating* (the
last keep-alive is at most the threshold old) or *outage*. ``excluded`` are the
outage and unknown minutes that fall in an operator-declared excluded window.

The uptime is 23 CFR 680.116(b)'s
``µ = ((T - (T_outage - T_excluded)) / T) x 100`` with T the period's minutes
(a month: days x 1440; twelve months: 525,600, or 527,040 when they hold a
29 February). How unknown minutes enter it is the :class:`UnknownMinutes` policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class UnknownMinutes(enum.Enum):
    """How a minute without data counts."""

    OUTAGE = "outage"  # as outage: never silently up (the default)
    EXCLUDE = "exclude"  # left out of the period: numerator and denominator


@dataclass(frozen=True)
class Tally:
    """Minute counts of one charger over one period (a month, or the sum of months)."""

    total: int  # the period's minutes
    known: int  # minutes with a sample: communicating or outage
    communicating: int
    excluded_known: int = 0  # outage minutes inside excluded windows
    excluded_unknown: int = 0  # unknown minutes inside excluded windows

    def __post_init__(self) -> None:
        if not (
            0 <= self.communicating <= self.known <= self.total
            and 0 <= self.excluded_known <= self.outage
            and 0 <= self.excluded_unknown <= self.unknown
        ):
            raise ValueError(f"inconsistent minute counts: {self}")

    @property
    def observed(self) -> int:
        return self.known

    @property
    def unknown(self) -> int:
        return self.total - self.known

    @property
    def outage(self) -> int:
        return self.known - self.communicating

    @property
    def excluded(self) -> int:
        return self.excluded_known + self.excluded_unknown

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.total + other.total,
            self.known + other.known,
            self.communicating + other.communicating,
            self.excluded_known + other.excluded_known,
            self.excluded_unknown + other.excluded_unknown,
        )


def tally_from_counts(
    total: int, known: int, communicating: int, window: WindowCounts | None = None
) -> Tally:
    """The tally of a period from Prometheus' counts, in the period and in its
    excluded windows (window minutes, and known / communicating ones among them)."""
    if window is None:
        return Tally(total, known, communicating)
    return Tally(
        total,
        known,
        communicating,
        excluded_known=window.known - window.communicating,
        excluded_unknown=window.minutes - window.known,
    )


@dataclass(frozen=True)
class WindowCounts:
    """Minutes inside a charger's excluded windows in one period."""

    minutes: int
    known: int
    communicating: int

    def __post_init__(self) -> None:
        if not 0 <= self.communicating <= self.known <= self.minutes:
            raise ValueError(f"inconsistent window counts: {self}")


def uptime_percent(tally: Tally, unknown: UnknownMinutes) -> Decimal | None:
    """µ in percent, rounded *down* to 4 decimals (0.0001 % is 32 s of a year), so
    a charger is never shown above a threshold it did not reach. None when the
    period has no minute to count (every minute unknown, under EXCLUDE)."""
    if unknown is UnknownMinutes.OUTAGE:
        period = tally.total
        downtime = tally.outage + tally.unknown - tally.excluded
    else:
        period = tally.total - tally.unknown
        downtime = tally.outage - tally.excluded_known
    if period == 0:
        return None
    # Integer floor division: exact, no decimal context to round up at its last digit.
    ten_thousandths = (period - downtime) * 100 * 10_000 // period
    return Decimal(ten_thousandths).scaleb(-4)
