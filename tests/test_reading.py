"""Payload → reading on canned payloads: exact, tolerant, never inventing a value."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from exporter.kinds.ev_dashboard import energy_factor, parse_payload
from exporter.lynx.errors import BadPayloadError

FULL: dict[str, Any] = {
    "OperatorDashboard": {
        "TotalOperatorMachines": 123,
        "TotalCommunicatingMachines": 120,
        "TotalActiveMachines": 80,
        "TotalSilentMachines": 3,
    },
    "MachineDashboard": {
        "UnitOfMeasure": "Kilowatt hour",
        "UnitOfMeasureSymbol": "kWh",
        "NumberOfChargingSessions": 40,
        "NumberOfTransactionsForTimeInterval": 41,
        "SalesAmountForTimeInterval": 312.5,
        "TotalChargingSessionsDuration": 7200,
        "TotalEnergyConsumption": 12.5,
    },
    "TimePeriod": None,
}


def parse(payload: object, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "duration_unit": "seconds",
        "energy_unit": "auto",
        "want_operator": True,
    }
    options.update(kwargs)
    return parse_payload(payload, **options)


def with_machine(**fields: object) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(json.dumps(FULL))
    payload["MachineDashboard"].update(fields)
    return payload


def test_full_payload_converts_units() -> None:
    reading = parse(FULL)
    assert reading.problems == ()
    assert reading.operator.machines == 123
    assert reading.operator.communicating == 120
    assert reading.operator.active == 80
    assert reading.operator.silent == 3
    assert reading.figures.charging_sessions == 40
    assert reading.figures.transactions == 41
    assert reading.figures.sales_amount == 312.5
    assert reading.figures.charging_duration_seconds == 7200
    assert reading.figures.energy_joules == 45_000_000  # 12.5 kWh
    assert reading.energy_unit == "kWh"
    assert reading.time_period is None


@pytest.mark.parametrize(
    ("symbol", "joules"),
    [("Wh", 3600.0), ("kWh", 3.6e6), ("KWH", 3.6e6), ("MWh", 3.6e9), (" kWh ", 3.6e6)],
)
def test_energy_units(symbol: str, joules: float) -> None:
    reading = parse(with_machine(UnitOfMeasureSymbol=symbol, TotalEnergyConsumption=1))
    assert reading.figures.energy_joules == joules


def test_configured_energy_unit_overrides_the_symbol() -> None:
    reading = parse(with_machine(UnitOfMeasureSymbol="furlongs"), energy_unit="Wh")
    assert reading.figures.energy_joules == 12.5 * 3600
    assert reading.problems == ()
    assert energy_factor(None, "MWh") == 3.6e9
    assert energy_factor(None, "auto") is None


@pytest.mark.parametrize(("unit", "factor"), [("seconds", 1), ("minutes", 60), ("hours", 3600)])
def test_duration_units(unit: str, factor: int) -> None:
    reading = parse(with_machine(TotalChargingSessionsDuration=2), duration_unit=unit)
    assert reading.figures.charging_duration_seconds == 2 * factor


def test_unknown_unit_drops_only_energy_and_says_so() -> None:
    reading = parse(with_machine(UnitOfMeasureSymbol="furlongs"))
    assert reading.figures.energy_joules is None
    assert reading.figures.charging_sessions == 40
    assert [p.reason for p in reading.problems] == ["unknown_unit"]
    missing_symbol = parse(with_machine(UnitOfMeasureSymbol=None))
    assert missing_symbol.figures.energy_joules is None
    assert [p.reason for p in missing_symbol.problems] == ["unknown_unit"]


def test_missing_and_null_fields_are_absent_not_zero() -> None:
    payload = {
        "OperatorDashboard": {"TotalOperatorMachines": None},
        "MachineDashboard": {"NumberOfChargingSessions": 0},
    }
    reading = parse(payload)
    assert reading.problems == ()
    assert reading.operator.machines is None
    assert reading.operator.silent is None
    assert reading.figures.charging_sessions == 0  # a real 0 stays 0
    assert reading.figures.transactions is None
    assert reading.figures.energy_joules is None  # no value: no unit problem either


def test_numeric_strings_are_numbers_and_extra_fields_ignored() -> None:
    payload = with_machine(NumberOfChargingSessions="40", SalesAmountForTimeInterval=" 1.25 ")
    payload["Surprise"] = {"nested": [1, 2]}
    payload["MachineDashboard"]["NewField"] = "x"
    reading = parse(payload)
    assert reading.problems == ()
    assert reading.figures.charging_sessions == 40
    assert reading.figures.sales_amount == 1.25


@pytest.mark.parametrize(
    "value", ["forty", [], {}, True, math.nan, math.inf, -math.inf, "NaN", "Infinity", "1e999"]
)
def test_bad_values_drop_the_field_and_are_bad_payload(value: object) -> None:
    reading = parse(with_machine(NumberOfChargingSessions=value))
    assert reading.figures.charging_sessions is None
    assert reading.figures.transactions == 41  # the rest of the answer survives
    assert [(p.reason, p.field) for p in reading.problems] == [
        ("bad_payload", "MachineDashboard.NumberOfChargingSessions")
    ]


def test_negative_counts_are_bad_but_negative_sales_are_refunds() -> None:
    reading = parse(with_machine(NumberOfChargingSessions=-1, SalesAmountForTimeInterval=-5.5))
    assert reading.figures.charging_sessions is None
    assert reading.figures.sales_amount == -5.5
    assert [p.field for p in reading.problems] == ["MachineDashboard.NumberOfChargingSessions"]


def test_figures_beyond_the_documented_range_are_bad() -> None:
    reading = parse(with_machine(TotalEnergyConsumption=1e308, NumberOfChargingSessions=1e15))
    assert reading.figures.charging_sessions == 1e15  # MAX_FIGURE itself is published
    assert reading.figures.energy_joules is None
    assert [(p.field, p.detail) for p in reading.problems] == [
        ("MachineDashboard.TotalEnergyConsumption", "out of range: 1e+308")
    ]


def test_numeric_strings_must_be_in_json_syntax() -> None:
    reading = parse(with_machine(NumberOfChargingSessions="1_0", TotalEnergyConsumption="\u0663"))
    assert reading.figures.charging_sessions is None
    assert reading.figures.energy_joules is None
    assert [p.field for p in reading.problems] == [
        "MachineDashboard.TotalEnergyConsumption",
        "MachineDashboard.NumberOfChargingSessions",
    ]


def test_a_unit_symbol_with_control_characters_is_cleaned_before_use() -> None:
    reading = parse(with_machine(UnitOfMeasureSymbol="kWh\u2028\ud800"))
    assert reading.energy_unit == "kWh \ufffd"
    assert [p.reason for p in reading.problems] == ["unknown_unit"]


def test_missing_sections() -> None:
    no_operator = parse({"MachineDashboard": FULL["MachineDashboard"]})
    assert [(p.reason, p.field) for p in no_operator.problems] == [
        ("bad_payload", "OperatorDashboard")
    ]
    assert no_operator.figures.charging_sessions == 40
    # Per-machine targets do not publish operator figures: no problem there.
    per_machine = parse({"MachineDashboard": FULL["MachineDashboard"]}, want_operator=False)
    assert per_machine.problems == ()
    no_machine = parse({"OperatorDashboard": FULL["OperatorDashboard"]})
    assert [p.field for p in no_machine.problems] == ["MachineDashboard"]
    wrong_type = parse({"OperatorDashboard": [1], "MachineDashboard": "x"})
    assert {p.field for p in wrong_type.problems} == {"OperatorDashboard", "MachineDashboard"}


@pytest.mark.parametrize("payload", [[], [FULL], "text", 3, None, True])
def test_non_object_payload_is_bad(payload: object) -> None:
    with pytest.raises(BadPayloadError, match="expected a JSON object"):
        parse(payload)


def test_time_period_passes_through() -> None:
    assert parse({**FULL, "TimePeriod": 3}).time_period == 3
    assert parse({**FULL, "TimePeriod": "3"}).time_period is None
