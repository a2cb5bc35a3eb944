"""Cumulative windows: the evDashboard figures since the start of the month or year,
published as counters (docs/counters.md).

A counter's value is the vendor's own figure since the anchor, never a sum of
deltas kept by this process, so a restarted exporter publishes the same value:

- the anchor is the start of the current month or year in the window's time zone;
- one request may ask for at most ``max_request_span`` (a day, month or year: the
  vendor's maximum range is undocumented), so the range since the anchor is cut
  into sub-periods of that span (:func:`periods`). The closed ones are asked for
  once and their sum kept in memory (the target's :class:`Ledger`); the current
  one is asked for at every poll. A restart asks for the closed ones again;
- a figure is published only when every part has it: never a partial sum;
- monotonic: a total that goes down within a period (a refund, a correction
  upstream) keeps the highest value published in this period, and the decrease
  is counted in ``nayax_ev_cumulative_corrections_total``.

The parts' answers (:meth:`CumulativeDashboard.fetch`) are read by
:meth:`CumulativeDashboard.parse`, which also records in the target's ledger
the closed parts it read and the published totals: the one state these windows
keep, in memory, per target object (it goes with the target).
"""

from __future__ import annotations

import math
import threading
import weakref
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Final

from exporter.config import Config, UnitsConfig, WindowConfig
from exporter.kinds.base import (
    CounterFamily,
    CounterSample,
    Family,
    GetJson,
    Problem,
    Result,
    Sample,
    machine_labels,
)
from exporter.kinds.ev_dashboard import (
    NO_OPERATOR_STATUS,
    OPERATOR_SERIES,
    MachineFigures,
    OperatorStatus,
    Reading,
    parse_payload,
)
from exporter.kinds.windows import format_instant
from exporter.lynx.client import Answer
from exporter.lynx.errors import BadPayloadError
from exporter.lynx.upstream import Dropped
from exporter.targets import EV_DASHBOARD, Target

__all__ = [
    "ACTOR_COUNTERS",
    "CORRECTIONS",
    "MACHINE_COUNTERS",
    "CumulativeAnswer",
    "CumulativeDashboard",
    "CumulativeReading",
    "Ledger",
    "Periods",
    "periods",
    "settle",
]

_SPAN_RANK: Final = {"day": 0, "month": 1, "year": 2}
# Two totals this close are equal: a sum of the same parts in another order may
# differ in its last bits, which is no correction.
_SAME: Final = 1e-9


# --- the sub-periods ------------------------------------------------------------------


def _start_of(local: datetime, unit: str) -> datetime:
    """The start of the day, month or year that naive local ``local`` is in. Pure."""
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return midnight
    if unit == "month":
        return midnight.replace(day=1)
    return midnight.replace(month=1, day=1)


def _next(start: datetime, unit: str) -> datetime:
    """The start of the following day, month or year (naive local). Pure."""
    if unit == "day":
        return start + timedelta(days=1)
    if unit == "month":
        year, month = divmod(start.month, 12)  # December rolls over to January
        return start.replace(year=start.year + year, month=month + 1)
    return start.replace(year=start.year + 1)


@dataclass(frozen=True)
class Periods:
    """The range since a cumulative window's anchor, cut into requests."""

    anchor: datetime  # where the counters start from 0 (aware)
    closed: tuple[tuple[datetime, datetime], ...]  # [start, end) of each closed part
    current: datetime  # start of the current part (the anchor when none is closed)


def periods(window: WindowConfig, now: datetime) -> Periods:
    """The anchor and parts of cumulative ``window`` at ``now`` (aware). Pure.

    Local midnights are in the window's time zone, re-localised one by one (a
    DST change shifts the offset between them); consecutive parts share their
    boundary instant, so they tile the range without gap or overlap."""
    assert window.cumulative is not None  # only cumulative windows come here
    zone = zoneinfo.ZoneInfo(window.timezone)
    local = now.astimezone(zone).replace(tzinfo=None)
    anchor = _start_of(local, window.cumulative)
    span = window.max_request_span
    if _SPAN_RANK[span] >= _SPAN_RANK[window.cumulative]:
        return Periods(anchor.replace(tzinfo=zone), (), anchor.replace(tzinfo=zone))
    current = _start_of(local, span)
    closed: list[tuple[datetime, datetime]] = []
    start = anchor
    while start < current:
        end = _next(start, span)
        closed.append((start.replace(tzinfo=zone), end.replace(tzinfo=zone)))
        start = end
    return Periods(anchor.replace(tzinfo=zone), tuple(closed), current.replace(tzinfo=zone))


# --- totals -----------------------------------------------------------------------------

_FIGURES: Final = tuple(f.name for f in fields(MachineFigures))
_ZERO: Final = MachineFigures(**dict.fromkeys(_FIGURES, 0.0))
_UNKNOWN: Final = MachineFigures()


def _add(a: MachineFigures, b: MachineFigures) -> MachineFigures:
    """Figure by figure; unknown in either is unknown in the sum. Pure."""
    sums: dict[str, float | None] = {}
    for name in _FIGURES:
        x, y = getattr(a, name), getattr(b, name)
        sums[name] = None if x is None or y is None else x + y
    return MachineFigures(**sums)


def _lower(value: float, than: float) -> bool:
    return value < than and not math.isclose(value, than, rel_tol=_SAME, abs_tol=_SAME)


def settle(
    marks: MachineFigures, last: MachineFigures, vendor: MachineFigures
) -> tuple[MachineFigures, MachineFigures, int]:
    """(published, new marks, corrections) for the vendor's totals ``vendor``. Pure.

    A published figure never goes below its mark, the highest published in this
    period; an unknown figure is not published but keeps its mark. A correction
    is a figure lower than the vendor's ``last`` total: counted once, when seen."""
    published: dict[str, float | None] = {}
    new_marks: dict[str, float | None] = {}
    corrections = 0
    for name in _FIGURES:
        mark, before, value = getattr(marks, name), getattr(last, name), getattr(vendor, name)
        if value is None:
            published[name], new_marks[name] = None, mark
            continue
        if before is not None and _lower(value, before):
            corrections += 1
        high = value if mark is None else max(mark, value)
        published[name] = new_marks[name] = high
    return MachineFigures(**published), MachineFigures(**new_marks), corrections


def _remember(last: MachineFigures, vendor: MachineFigures) -> MachineFigures:
    """The last known vendor total of each figure. Pure."""
    return MachineFigures(
        **{
            name: getattr(last, name) if getattr(vendor, name) is None else getattr(vendor, name)
            for name in _FIGURES
        }
    )


# --- the ledger: what a target keeps between polls ---------------------------------------


@dataclass(frozen=True)
class Closed:
    """The sum of the closed parts read so far, contiguous from the anchor."""

    through: datetime  # end of the last part summed (the anchor: none yet)
    totals: MachineFigures
    units: UnitsConfig  # what the totals were converted with


@dataclass
class Ledger:
    """One target's memory of its cumulative window: the source and period it is
    for (a new client or a new period starts it afresh), the closed parts' sum,
    the marks and the last vendor totals, and the corrections seen (for the
    process's life). Only its own target's polls, one at a time, touch it."""

    source: GetJson | None = None
    anchor: datetime | None = None
    closed: Closed | None = None
    marks: MachineFigures = _UNKNOWN
    last: MachineFigures = _UNKNOWN
    corrections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, source: GetJson, anchor: datetime) -> Closed | None:
        """The closed parts' sum to build on, after starting afresh if the source
        or the period changed."""
        with self.lock:
            if self.source != source or self.anchor != anchor:
                self.source, self.anchor = source, anchor
                self.closed, self.marks, self.last = None, _UNKNOWN, _UNKNOWN
            return self.closed

    def commit(
        self, anchor: datetime, closed: Closed | None, vendor: MachineFigures
    ) -> tuple[MachineFigures, int]:
        """Keep ``closed`` and settle ``vendor``: (published totals, corrections so far)."""
        with self.lock:
            if self.anchor != anchor:  # a poll of another period overtook this one
                return _UNKNOWN, self.corrections
            self.closed = closed
            published, self.marks, seen = settle(self.marks, self.last, vendor)
            self.last = _remember(self.last, vendor)
            self.corrections += seen
            return published, self.corrections


class _Ledgers:
    """A ledger per target *object*: a reload that keeps a target keeps the object
    (exporter/polling/plan.py ``reusing``) and so its ledger; a target that is
    gone takes its ledger with it. Two exporters in one process never share one."""

    def __init__(self) -> None:
        self._by_id: dict[int, Ledger] = {}
        self._lock = threading.Lock()

    def __call__(self, target: Target) -> Ledger:
        key = id(target)
        with self._lock:
            ledger = self._by_id.get(key)
            if ledger is None:
                ledger = self._by_id[key] = Ledger()
                weakref.finalize(target, self._by_id.pop, key, None)
            return ledger

    def __len__(self) -> int:
        return len(self._by_id)


# --- the series -----------------------------------------------------------------------------

_SINCE = "since the start of the window's month or year (its `_created`), never going down"
_COUNTED = (
    ("NumberOfChargingSessions", "charging_sessions", ""),
    ("NumberOfTransactionsForTimeInterval", "transactions", ""),
    ("SalesAmountForTimeInterval", "sales_amount", ", in the actor's currency"),
    ("TotalChargingSessionsDuration", "charging_duration_seconds", ", in seconds"),
    ("TotalEnergyConsumption", "energy_joules", ", in joules"),
)
_ACTOR_LABELS = ("actor_id", "actor", "window")
_MACHINE_LABELS = ("actor_id", "actor", "machine_id", "machine_number", "machine", "window")


def _counter_families(scope: str) -> tuple[tuple[CounterFamily, str], ...]:
    per_machine = scope == "machine"
    where = "for one machine" if per_machine else "across the actor's machines"
    labels = _MACHINE_LABELS if per_machine else _ACTOR_LABELS
    return tuple(
        (
            CounterFamily(
                f"nayax_ev_{scope}_cumulative_{name}",
                f"MachineDashboard.{field} {where} {_SINCE}{unit_note}. "
                "Polled from the Lynx API evDashboard endpoint (cumulative windows).",
                (*labels, "currency") if name == "sales_amount" else labels,
            ),
            name,
        )
        for field, name, unit_note in _COUNTED
    )


ACTOR_COUNTERS = _counter_families("operator")
MACHINE_COUNTERS = _counter_families("machine")
CORRECTIONS = CounterFamily(
    "nayax_ev_cumulative_corrections",
    "Times a cumulative window's vendor total went down within its period (a refund, "
    "a correction upstream) since the exporter started; the counter kept its highest value.",
    ("actor_id", "actor", "machine", "window"),
)
COUNTER_FAMILIES: tuple[Family, ...] = (
    *(f for f, _ in ACTOR_COUNTERS),
    *(f for f, _ in MACHINE_COUNTERS),
    CORRECTIONS,
)


def counter_samples(target: Target, reading: CumulativeReading) -> Iterator[Sample]:
    """The series of one cumulative reading (and the operator status, for the one
    target of the actor that publishes it). Pure."""
    actor = (("actor_id", str(target.actor_id)), ("actor", target.actor))
    window = (("window", target.window.name),)
    if target.operator_status:
        status = Reading(reading.operator, _UNKNOWN, energy_unit=None, time_period=None)
        for family, value_of in OPERATOR_SERIES:
            value = value_of(status)
            if value is not None:
                yield Sample(family, actor, value)
    labels: tuple[tuple[str, str], ...]
    if target.actor_wide:
        labels, series = (*actor, *window), ACTOR_COUNTERS
    else:
        labels, series = (*machine_labels(target), *window), MACHINE_COUNTERS
    for family, name in series:
        value = getattr(reading.figures, name)
        if value is None:
            continue  # absent stays absent
        with_currency = (*labels, ("currency", target.currency))
        yield CounterSample(
            family,
            with_currency if family.labels[-1] == "currency" else labels,
            value,
            reading.anchor,
        )
    own = (*actor, ("machine", target.machine_label), *window)
    yield CounterSample(CORRECTIONS, own, float(reading.corrections))


# --- fetch and parse ----------------------------------------------------------------------


@dataclass(frozen=True)
class CumulativeAnswer:
    """What one poll of a cumulative window read: the closed parts not yet in the
    ledger (in order) and the current part, with the ledger they build on."""

    ledger: Ledger
    anchor: datetime
    base: Closed | None  # the ledger's closed sum when the poll began
    parts: tuple[tuple[datetime, datetime, object], ...]  # (start, end, payload)
    current: object


@dataclass(frozen=True, slots=True)
class CumulativeReading:
    """A cumulative window's published totals (high-water marks) since ``anchor``."""

    anchor: float  # Unix time: the counters' `_created`
    operator: OperatorStatus
    figures: MachineFigures
    corrections: int
    problems: tuple[Problem, ...] = ()
    notices: tuple[Problem, ...] = ()
    dropped: tuple[Dropped, ...] = ()


def _range(start: datetime, end: datetime) -> dict[str, str]:
    return {"StartDate": format_instant(start), "EndDate": format_instant(end)}


def _read_parts(
    answer: CumulativeAnswer, units: UnitsConfig, problems: list[Problem]
) -> tuple[Closed | None, MachineFigures]:
    """(the closed sum to keep, the sum of every closed part). A part read with a
    problem counts in this poll's sum (its unusable figure as unknown) but is not
    kept, nor any after it: the next poll asks for them again."""
    if answer.base is not None and answer.base.units != units:
        return None, _UNKNOWN  # a reload changed the units: all parts again next poll
    kept = answer.base or Closed(answer.anchor, _ZERO, units)
    total = kept.totals
    for start, end, payload in answer.parts:
        reading = parse_payload(
            payload, duration_unit=units.duration, energy_unit=units.energy, want_operator=False
        )
        total = _add(total, reading.figures)
        part = f"{format_instant(start)}..{format_instant(end)}"
        problems.extend(replace(p, field=f"{p.field} ({part})") for p in reading.problems)
        if not reading.problems and start == kept.through:
            kept = Closed(end, _add(kept.totals, reading.figures), units)
    return kept, total


@dataclass(frozen=True)
class CumulativeDashboard:
    """evDashboard for the targets of cumulative windows (see the module docstring);
    :class:`~exporter.kinds.ev_dashboard.EvDashboard` hands them here."""

    name: str = EV_DASHBOARD
    families: tuple[Family, ...] = COUNTER_FAMILIES
    ledgers: _Ledgers = field(default_factory=_Ledgers, compare=False, repr=False)

    def fetch(self, get_json: GetJson, target: Target, now: datetime) -> Answer:
        cut = periods(target.window, now)
        ledger = self.ledgers(target)
        base = ledger.begin(get_json, cut.anchor)
        through = cut.anchor if base is None else base.through
        path = f"/v1/actors/{target.actor_id}/evDashboard"
        machine = target.machine_params()
        parts: list[tuple[datetime, datetime, object]] = []
        attempts, duration = 0, 0.0
        for start, end in cut.closed:
            if start < through:
                continue  # in the kept sum
            got = get_json(path, {**_range(start, end), **machine}, target.token)
            parts.append((start, end, got.payload))
            attempts, duration = attempts + got.attempts, duration + got.duration
        current = get_json(path, {**_range(cut.current, now), **machine}, target.token)
        payload = CumulativeAnswer(ledger, cut.anchor, base, tuple(parts), current.payload)
        return Answer(
            payload, current.status, attempts + current.attempts, duration + current.duration
        )

    def parse(
        self, payload: object, target: Target, config: Config, now: float
    ) -> CumulativeReading:
        """The totals since the anchor; records the closed parts read and the
        published totals in the target's ledger (the one effect of this parse)."""
        if not isinstance(payload, CumulativeAnswer):
            raise BadPayloadError("expected the parts of a cumulative window")
        units = config.units
        current = parse_payload(
            payload.current,
            duration_unit=units.duration,
            energy_unit=units.energy,
            want_operator=target.operator_status,
        )
        problems = list(current.problems)
        kept, closed_total = _read_parts(payload, units, problems)
        vendor = _add(closed_total, current.figures)
        published, corrections = payload.ledger.commit(payload.anchor, kept, vendor)
        return CumulativeReading(
            anchor=payload.anchor.timestamp(),
            operator=current.operator if target.operator_status else NO_OPERATOR_STATUS,
            figures=published,
            corrections=corrections,
            problems=tuple(problems),
        )

    def samples(self, target: Target, reading: Result) -> Iterator[Sample]:
        """Pure."""
        assert isinstance(reading, CumulativeReading)  # what this kind's parse returns
        return counter_samples(target, reading)
