"""A machine's transactions over time, deterministic and summable over any range in O(1).

Sessions follow each other at a steady pace with a jitter, so a figure over any
date range is the sum of the transactions in it, and the figures of adjacent
ranges add up to the figure of their union (what cumulative windows rely on):

- session ``i`` (any integer: the history has no start) ends, and is recorded, at
  ``phase + (i + jitter[i mod N]) * gap``; a jitter below 1 keeps them in order;
- each session has its price, duration and energy from a repeating pattern of N
  positions around the machine's profile; some positions also record a second
  transaction without a sale;
- some sessions are refunded ``refund_delay`` gaps later: one more transaction, of
  minus the session's price (a range's sales may go down as time passes).

A range [start, end) holds the sessions recorded at ``start <= t < end``; amounts
are integers (cents, seconds, watt-hours), so sums are exact. Pure.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Final

__all__ = ["PATTERN", "History", "Totals", "uniform"]

PATTERN: Final = 32  # positions of the repeating pattern of a machine's sessions
_MAX_JITTER: Final = 0.8  # of a gap: sessions stay in order, at least 0.2 gaps apart
_REFUND_DELAY: Final = 0.5  # gaps between a refunded session and its refund


def uniform(*parts: object) -> float:
    """Stable pseudo-random number in [0, 1) from its inputs (independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Totals:
    """What the transactions of a range add up to."""

    sessions: int = 0
    transactions: int = 0
    sales_cents: int = 0  # refunds subtract
    duration_seconds: int = 0
    energy_wh: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.sessions + other.sessions,
            self.transactions + other.transactions,
            self.sales_cents + other.sales_cents,
            self.duration_seconds + other.duration_seconds,
            self.energy_wh + other.energy_wh,
        )


@dataclass(frozen=True)
class _Prefix:
    """Sums over the first k positions of the pattern, k = 0..PATTERN."""

    transactions: tuple[int, ...]
    cents: tuple[int, ...]
    seconds: tuple[int, ...]
    wh: tuple[int, ...]
    refunds: tuple[int, ...]
    refund_cents: tuple[int, ...]

    def over(self, column: tuple[int, ...], first: int, end: int) -> int:
        """The sum of ``column``'s values for session indexes [first, end)."""
        return self._upto(column, end) - self._upto(column, first)

    @staticmethod
    def _upto(column: tuple[int, ...], n: int) -> int:
        laps, rest = divmod(n, PATTERN)  # floor division: right for negative n too
        return laps * column[PATTERN] + column[rest]


def _prefix(values: list[int]) -> tuple[int, ...]:
    return tuple(itertools.accumulate(values, initial=0))


class History:
    """One machine's transactions (see the module docstring)."""

    def __init__(
        self,
        key: str,
        *,
        sessions_per_hour: float,
        price: float,
        seconds_per_session: int,
        kwh_per_session: float,
        extra_transaction_share: float,
        refund_share: float,
    ) -> None:
        self.gap = 3600.0 / sessions_per_hour if sessions_per_hour > 0 else math.inf
        self.phase = 0.0 if math.isinf(self.gap) else uniform(key, "phase") * self.gap
        self.refund_delay = _REFUND_DELAY * self.gap
        self._jitter = tuple(uniform(key, "jitter", r) * _MAX_JITTER for r in range(PATTERN))
        cents, seconds, wh, extra, refunded = [], [], [], [], []
        for r in range(PATTERN):
            spread = 0.8 + 0.4 * uniform(key, "spread", r)  # within 20% of the profile
            cents.append(round(price * spread * 100))
            seconds.append(round(seconds_per_session * (0.9 + 0.2 * uniform(key, "time", r))))
            wh.append(round(kwh_per_session * spread * 1000))
            extra.append(1 if uniform(key, "extra", r) < extra_transaction_share else 0)
            refunded.append(1 if uniform(key, "refund", r) < refund_share else 0)
        self._sums = _Prefix(
            transactions=_prefix([1 + e for e in extra]),
            cents=_prefix(cents),
            seconds=_prefix(seconds),
            wh=_prefix(wh),
            refunds=_prefix(refunded),
            refund_cents=_prefix([c * f for c, f in zip(cents, refunded, strict=True)]),
        )

    def session_time(self, index: int) -> float:
        """Epoch seconds at which session ``index`` is recorded."""
        return self.phase + (index + self._jitter[index % PATTERN]) * self.gap

    def _index_at(self, moment: float) -> int:
        """How many sessions (counted from index 0, negative before it) are
        recorded before ``moment``: the first index recorded at or after it."""
        position = (moment - self.phase) / self.gap
        whole = math.floor(position)
        return whole + (1 if whole + self._jitter[whole % PATTERN] < position else 0)

    def between(self, start: float, end: float) -> Totals:
        """The transactions recorded in [start, end) (epoch seconds)."""
        if math.isinf(self.gap) or end <= start:
            return Totals()
        first, last = self._index_at(start), self._index_at(end)
        shift = self.refund_delay
        refunds_from, refunds_to = self._index_at(start - shift), self._index_at(end - shift)
        sums = self._sums
        return Totals(
            sessions=last - first,
            transactions=sums.over(sums.transactions, first, last)
            + sums.over(sums.refunds, refunds_from, refunds_to),
            sales_cents=sums.over(sums.cents, first, last)
            - sums.over(sums.refund_cents, refunds_from, refunds_to),
            duration_seconds=sums.over(sums.seconds, first, last),
            energy_wh=sums.over(sums.wh, first, last),
        )

    def refund_times(self, start: float, end: float) -> list[float]:
        """Epoch seconds of the refunds recorded in [start, end) (for tests)."""
        if math.isinf(self.gap):
            return []
        first = self._index_at(start - self.refund_delay)
        last = self._index_at(end - self.refund_delay)
        return [
            self.session_time(i) + self.refund_delay
            for i in range(first, last)
            if self._sums.over(self._sums.refunds, i, i + 1)
        ]
