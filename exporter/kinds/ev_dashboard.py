"""The ``ev_dashboard`` request kind: ``GET /v1/actors/{id}/evDashboard`` per actor or
machine and window, its exact reading and its series.

Rules (the vendor says any field may be missing or null):
- missing or null → the sample is absent, never a made-up 0;
- every value is read through the upstream boundary (exporter/lynx/upstream.py):
  numbers as JSON numbers or strings in JSON's number syntax, unknown extra
  fields ignored;
- a value that is not a finite number within ``upstream.MAX_FIGURE``, or is
  negative where only counts make sense, drops that sample and is reported as a
  ``bad_payload`` problem;
- energy is converted to joules and duration to seconds; an energy unit we do
  not know drops the energy sample (``unknown_unit``): we never guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from exporter.config import Config, DurationUnit, EnergyUnit
from exporter.kinds.base import (
    Family,
    GetJson,
    Problem,
    RequestKind,
    Result,
    Sample,
    machine_labels,
)
from exporter.kinds.windows import window_params
from exporter.lynx.client import Answer
from exporter.lynx.errors import BadPayloadError
from exporter.lynx.upstream import INT32_MAX, Dropped, Rejected, read_float, read_text, short_repr
from exporter.targets import EV_DASHBOARD, Target

JOULES_PER_WH = 3600.0
ENERGY_FACTORS: Mapping[str, float] = {
    "wh": JOULES_PER_WH,
    "kwh": 1_000 * JOULES_PER_WH,
    "mwh": 1_000_000 * JOULES_PER_WH,
}
DURATION_FACTORS: Mapping[str, float] = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0}
MAX_UNIT_CHARS = 16  # "kWh"; a longer symbol is shown cut in the unknown-unit error


@dataclass(frozen=True, slots=True)
class OperatorStatus:
    machines: float | None = None
    communicating: float | None = None
    active: float | None = None
    silent: float | None = None


# What a per-machine reading carries: one shared object, not one per poll (one
# fewer object per machine for the garbage collector to walk).
NO_OPERATOR_STATUS = OperatorStatus()


@dataclass(frozen=True, slots=True)
class MachineFigures:
    charging_sessions: float | None = None
    transactions: float | None = None
    sales_amount: float | None = None
    charging_duration_seconds: float | None = None
    energy_joules: float | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    operator: OperatorStatus
    figures: MachineFigures
    energy_unit: str | None
    time_period: int | None
    problems: tuple[Problem, ...] = ()
    notices: tuple[Problem, ...] = ()  # evDashboard notices nothing
    dropped: tuple[Dropped, ...] = ()  # evDashboard drops nothing: every flaw is a problem


def _number(
    section: Mapping[str, object],
    section_name: str,
    field: str,
    problems: list[Problem],
    *,
    allow_negative: bool = False,
) -> float | None:
    raw = section.get(field)
    number = read_float(raw)
    where = f"{section_name}.{field}"
    if isinstance(number, Rejected):
        problems.append(Problem("bad_payload", where, number.detail))
        return None
    if number is not None and number < 0 and not allow_negative:
        problems.append(Problem("bad_payload", where, f"negative: {short_repr(raw)}"))
        return None
    return number


def _scaled(
    value: float | None, factor: float, field: str, problems: list[Problem]
) -> float | None:
    if value is None:
        return None
    scaled = value * factor
    if not math.isfinite(scaled):
        problems.append(Problem("bad_payload", field, "overflows after unit conversion"))
        return None
    return scaled


def _section(
    payload: Mapping[str, object], name: str, required: bool, problems: list[Problem]
) -> Mapping[str, object]:
    section = payload.get(name)
    if isinstance(section, Mapping):
        return section
    if section is None:
        if required:
            problems.append(Problem("bad_payload", name, "missing"))
        return {}
    problems.append(Problem("bad_payload", name, f"not an object: {short_repr(section)}"))
    return {}


def energy_factor(symbol: str | None, configured: EnergyUnit) -> float | None:
    """Joules per reported unit, or None when the unit is unknown."""
    unit = symbol if configured == "auto" else configured
    if unit is None:
        return None
    return ENERGY_FACTORS.get(unit.strip().lower())


def _operator(section: Mapping[str, object], problems: list[Problem]) -> OperatorStatus:
    def count(field: str) -> float | None:
        return _number(section, "OperatorDashboard", field, problems)

    return OperatorStatus(
        machines=count("TotalOperatorMachines"),
        communicating=count("TotalCommunicatingMachines"),
        active=count("TotalActiveMachines"),
        silent=count("TotalSilentMachines"),
    )


def _energy(
    raw_energy: float | None,
    symbol_raw: object,
    symbol: str | None,
    energy_unit: EnergyUnit,
    problems: list[Problem],
) -> float | None:
    """Energy in joules; an unknown unit is a problem, never a guess."""
    if raw_energy is None:
        return None
    factor = energy_factor(symbol, energy_unit)
    if factor is None:
        problems.append(
            Problem(
                "unknown_unit",
                "MachineDashboard.UnitOfMeasureSymbol",
                f"unknown energy unit {short_repr(symbol_raw)}; set units.energy",
            )
        )
        return None
    return _scaled(raw_energy, factor, "MachineDashboard.TotalEnergyConsumption", problems)


def parse_payload(
    payload: object,
    *,
    duration_unit: DurationUnit,
    energy_unit: EnergyUnit,
    want_operator: bool,
) -> Reading:
    """Interpret one decoded JSON answer. ``want_operator`` is False for
    per-machine requests, whose operator figures we do not publish."""
    if not isinstance(payload, Mapping):
        raise BadPayloadError(f"expected a JSON object, got {type(payload).__name__}")
    problems: list[Problem] = []
    operator_section = _section(payload, "OperatorDashboard", want_operator, problems)
    machine_section = _section(payload, "MachineDashboard", True, problems)

    operator = _operator(operator_section, problems) if want_operator else NO_OPERATOR_STATUS

    def figure(field: str, *, allow_negative: bool = False) -> float | None:
        return _number(
            machine_section, "MachineDashboard", field, problems, allow_negative=allow_negative
        )

    symbol_raw = machine_section.get("UnitOfMeasureSymbol")
    symbol_read = read_text(symbol_raw, MAX_UNIT_CHARS)
    symbol = symbol_read if isinstance(symbol_read, str) else None
    energy = _energy(figure("TotalEnergyConsumption"), symbol_raw, symbol, energy_unit, problems)
    duration = _scaled(
        figure("TotalChargingSessionsDuration"),
        DURATION_FACTORS[duration_unit],
        "MachineDashboard.TotalChargingSessionsDuration",
        problems,
    )
    figures = MachineFigures(
        charging_sessions=figure("NumberOfChargingSessions"),
        transactions=figure("NumberOfTransactionsForTimeInterval"),
        # Refunds can make a period's sales negative; that is data, not an error.
        sales_amount=figure("SalesAmountForTimeInterval", allow_negative=True),
        charging_duration_seconds=duration,
        energy_joules=energy,
    )
    period = payload.get("TimePeriod")  # int32 or null: passed through, never parsed from text
    time_period = (
        period
        if isinstance(period, int) and not isinstance(period, bool) and abs(period) <= INT32_MAX
        else None
    )
    return Reading(
        operator=operator,
        figures=figures,
        energy_unit=symbol,
        time_period=time_period,
        problems=tuple(problems),
    )


# --- the series ---------------------------------------------------------------------

_POLLED = "Polled in the background from the Lynx API evDashboard endpoint"
OPERATOR_LABELS = ("actor_id", "actor")
ACTOR_WINDOW_LABELS = ("actor_id", "actor", "window")
MACHINE_WINDOW_LABELS = ("actor_id", "actor", "machine_id", "machine_number", "machine", "window")

ValueOf = Callable[[Reading], float | None]


def _operator_family(field: str, what: str, attr: str) -> tuple[Family, ValueOf]:
    family = Family(
        f"nayax_ev_operator_{what}", f"OperatorDashboard.{field}. {_POLLED}.", OPERATOR_LABELS
    )
    return family, lambda reading: getattr(reading.operator, attr)


def _figure_families(scope: str) -> tuple[tuple[Family, ValueOf], ...]:
    """The five figures of MachineDashboard, for one machine or across the actor's."""
    per_machine = scope == "machine"
    where = "for one machine" if per_machine else "across the actor's machines"
    labels = MACHINE_WINDOW_LABELS if per_machine else ACTOR_WINDOW_LABELS
    figures = (
        ("NumberOfChargingSessions", "charging_sessions", ""),
        ("NumberOfTransactionsForTimeInterval", "transactions", ""),
        ("SalesAmountForTimeInterval", "sales_amount", ", in the actor's currency"),
        ("TotalChargingSessionsDuration", "charging_duration_seconds", ", converted to seconds"),
        (
            "TotalEnergyConsumption",
            "energy_joules",
            ", converted to joules from UnitOfMeasureSymbol",
        ),
    )
    out = []
    for field, name, unit_note in figures:
        family = Family(
            f"nayax_ev_{scope}_{name}",
            f"MachineDashboard.{field} {where} over the window{unit_note}. {_POLLED}.",
            (*labels, "currency") if name == "sales_amount" else labels,
        )
        out.append((family, _figure_value(name)))
    return tuple(out)


def _figure_value(attr: str) -> ValueOf:
    return lambda reading: getattr(reading.figures, attr)


OPERATOR_SERIES = (
    _operator_family("TotalOperatorMachines", "machines", "machines"),
    _operator_family("TotalCommunicatingMachines", "communicating_machines", "communicating"),
    _operator_family("TotalActiveMachines", "active_machines", "active"),
    _operator_family("TotalSilentMachines", "silent_machines", "silent"),
)
ACTOR_SERIES = _figure_families("operator")
MACHINE_SERIES = _figure_families("machine")


def _values(
    series: tuple[tuple[Family, ValueOf], ...],
    reading: Reading,
    labels: tuple[tuple[str, str], ...],
    currency: str,
) -> Iterator[Sample]:
    for family, value_of in series:
        value = value_of(reading)
        if value is None:
            continue  # absent stays absent: never a made-up 0
        if family.labels[-1] == "currency":
            yield Sample(family, (*labels, ("currency", currency)), value)
        else:
            yield Sample(family, labels, value)


def dashboard_samples(target: Target, reading: Reading) -> Iterator[Sample]:
    """The series of one fresh evDashboard reading. Pure."""
    actor = (("actor_id", str(target.actor_id)), ("actor", target.actor))
    window = (("window", target.window.name),)
    if target.actor_wide:
        if target.operator_status:
            yield from _values(OPERATOR_SERIES, reading, actor, target.currency)
        yield from _values(ACTOR_SERIES, reading, (*actor, *window), target.currency)
    else:
        labels = (*machine_labels(target), *window)
        yield from _values(MACHINE_SERIES, reading, labels, target.currency)


# --- the kind ------------------------------------------------------------------------


WINDOW_FAMILIES: tuple[Family, ...] = tuple(
    family for family, _ in (*OPERATOR_SERIES, *ACTOR_SERIES, *MACHINE_SERIES)
)


@dataclass(frozen=True)
class EvDashboard:
    """``GET /v1/actors/{actor}/evDashboard`` for one actor or machine and window.

    The targets of cumulative windows go to ``cumulative`` (exporter/kinds/cumulative.py,
    wired in by the registry): the same endpoint, asked per sub-period, read as counters.
    """

    name: str = EV_DASHBOARD
    cumulative: RequestKind | None = None

    @property
    def families(self) -> tuple[Family, ...]:
        counters = () if self.cumulative is None else self.cumulative.families
        return (*WINDOW_FAMILIES, *counters)

    def _cumulative(self, target: Target) -> RequestKind | None:
        if target.window.cumulative is None:
            return None
        if self.cumulative is None:
            raise BadPayloadError("cumulative windows are not wired in")  # a wiring bug
        return self.cumulative

    def fetch(self, get_json: GetJson, target: Target, now: datetime) -> Answer:
        cumulative = self._cumulative(target)
        if cumulative is not None:
            return cumulative.fetch(get_json, target, now)
        params = {**window_params(target.window, now), **target.machine_params()}
        return get_json(f"/v1/actors/{target.actor_id}/evDashboard", params, target.token)

    def parse(self, payload: object, target: Target, config: Config, now: float) -> Result:
        """Pure for windows; see CumulativeDashboard.parse for cumulative ones."""
        cumulative = self._cumulative(target)
        if cumulative is not None:
            return cumulative.parse(payload, target, config, now)
        return parse_payload(
            payload,
            duration_unit=config.units.duration,
            energy_unit=config.units.energy,
            want_operator=target.operator_status,
        )

    def samples(self, target: Target, reading: Result) -> Iterator[Sample]:
        """Pure."""
        cumulative = self._cumulative(target)
        if cumulative is not None:
            return cumulative.samples(target, reading)
        assert isinstance(reading, Reading)  # what this kind's parse returns
        return dashboard_samples(target, reading)
