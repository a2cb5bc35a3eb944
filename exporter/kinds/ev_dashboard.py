"""Payload → reading: the pure, exact interpretation of one evDashboard answer.

Rules (the vendor says any field may be missing or null):
- missing or null → the sample is absent, never a made-up 0;
- every value is read through the upstream boundary (exporter/upstream.py):
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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from exporter.config import Config, DurationUnit, EnergyUnit
from exporter.kinds.base import BadPayload, Problem, Request, Result
from exporter.kinds.windows import window_params
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


@dataclass(frozen=True)
class OperatorStatus:
    machines: float | None = None
    communicating: float | None = None
    active: float | None = None
    silent: float | None = None


# What a per-machine reading carries: one shared object, not one per poll (at
# 10,000 machines that is 10,000 fewer objects for the garbage collector to walk).
NO_OPERATOR_STATUS = OperatorStatus()


@dataclass(frozen=True)
class MachineFigures:
    charging_sessions: float | None = None
    transactions: float | None = None
    sales_amount: float | None = None
    charging_duration_seconds: float | None = None
    energy_joules: float | None = None


@dataclass(frozen=True)
class Reading:
    operator: OperatorStatus
    figures: MachineFigures
    energy_unit: str | None
    time_period: int | None
    problems: tuple[Problem, ...] = ()
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
        raise BadPayload(f"expected a JSON object, got {type(payload).__name__}")
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


@dataclass(frozen=True)
class EvDashboard:
    """``GET /v1/actors/{actor}/evDashboard`` for one actor or machine and window."""

    name: str = EV_DASHBOARD

    def request(self, target: Target, now: datetime) -> Request:
        """Pure."""
        params = {**window_params(target.window, now), **target.machine_params()}
        return Request(f"/v1/actors/{target.actor_id}/evDashboard", params)

    def parse(self, payload: object, target: Target, config: Config) -> Result:
        """Pure."""
        return parse_payload(
            payload,
            duration_unit=config.units.duration,
            energy_unit=config.units.energy,
            want_operator=target.operator_status,
        )
