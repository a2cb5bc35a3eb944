"""The fleet model: deterministic, proportional to the window, consistent sums."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exporter.simulator import Fleet, FleetSpec
from exporter.simulator.fleet import resolve_window

NOW = datetime(2024, 6, 15, 12, 0, 7, tzinfo=UTC)
ACTOR = 2001492652
COUNTS = (
    "NumberOfChargingSessions",
    "NumberOfTransactionsForTimeInterval",
    "TotalChargingSessionsDuration",
)
AMOUNTS = ("SalesAmountForTimeInterval", "TotalEnergyConsumption")


def _md(doc: dict[str, object]) -> dict[str, object]:
    block = doc["MachineDashboard"]
    assert isinstance(block, dict)
    return block


def _od(doc: dict[str, object]) -> dict[str, int]:
    block = doc["OperatorDashboard"]
    assert isinstance(block, dict)
    return block


def _num(block: dict[str, object], key: str) -> float:
    value = block[key]
    assert isinstance(value, int | float)
    return float(value)


def _window(fleet: Fleet, hours: float, **kw: object) -> dict[str, object]:
    machine = kw.get("machine")
    return fleet.dashboard(
        ACTOR,
        start=NOW - timedelta(hours=hours),
        end=NOW,
        machine=machine,  # type: ignore[arg-type]
        time_period=None,
        now=NOW,
    )


def test_structure_ids_and_numbers() -> None:
    fleet = Fleet(FleetSpec(actors=2, machines_per_actor=3))
    assert fleet.actor_ids() == [2001492652, 2001492653]
    second = fleet.machines(2001492653)
    assert [m.id for m in second] == [942588501, 942588502, 942588503]
    assert [m.number for m in second] == ["EV-001-0000", "EV-001-0001", "EV-001-0002"]
    assert all(m.actor_id == 2001492653 and m.name for m in second)
    assert fleet.machines(1) == []


def test_sites_can_be_given_one_per_actor() -> None:
    """Drawn from the seed, two actors may share a site and so their machines'
    names; the spec can give each its own (the demo does)."""
    drawn = Fleet(FleetSpec(actors=2, machines_per_actor=1))
    assert drawn.machines(ACTOR)[0].name == "Harbour Depot charger 1"  # the default is kept
    given = Fleet(FleetSpec(actors=2, machines_per_actor=1, sites=("North Park", "Tech Campus")))
    first, second = (given.machines(actor)[0] for actor in given.actor_ids())
    assert (first.name, first.city) == ("North Park charger 1", "Chicago")
    assert (second.name, second.city) == ("Tech Campus charger 1", "Bangalore")
    with pytest.raises(ValueError, match="one site per actor"):
        FleetSpec(actors=2, sites=("North Park",))
    with pytest.raises(ValueError, match="unknown sites"):
        FleetSpec(actors=1, sites=("Nowhere",))


def test_find_machine() -> None:
    fleet = Fleet(FleetSpec())
    m = fleet.machines(ACTOR)[4]
    assert fleet.find_machine(ACTOR, m.id, None) == m
    assert fleet.find_machine(ACTOR, None, m.number) == m
    assert fleet.find_machine(ACTOR + 1, m.id, None) is None  # other actor's machine
    assert fleet.find_machine(ACTOR, None, "EV-999-9999") is None
    assert fleet.find_machine(ACTOR, None, None) is None
    assert fleet.find_machine(42, m.id, None) is None


def test_same_seed_same_output_and_seed_matters() -> None:
    a = _window(Fleet(FleetSpec(seed=7)), 24)
    b = _window(Fleet(FleetSpec(seed=7)), 24)
    c = _window(Fleet(FleetSpec(seed=8)), 24)
    assert a == b
    assert _md(a) != _md(c)


def test_response_shape() -> None:
    doc = Fleet(FleetSpec()).dashboard(
        ACTOR, start=NOW - timedelta(days=1), end=NOW, machine=None, time_period=3, now=NOW
    )
    assert set(doc) == {"OperatorDashboard", "MachineDashboard", "TimePeriod"}
    assert set(_od(doc)) == {
        "TotalOperatorMachines",
        "TotalCommunicatingMachines",
        "TotalActiveMachines",
        "TotalSilentMachines",
    }
    md = _md(doc)
    assert set(md) == {"UnitOfMeasure", "UnitOfMeasureSymbol", *COUNTS, *AMOUNTS}
    assert doc["TimePeriod"] == 3
    for key in COUNTS:
        assert isinstance(md[key], int)
    for key in AMOUNTS:
        assert isinstance(md[key], float)
    assert md["UnitOfMeasure"] == "Kilowatt hour"
    assert md["UnitOfMeasureSymbol"] == "kWh"


def test_figures_scale_with_window_length() -> None:
    fleet = Fleet(FleetSpec())
    day, two_days = _md(_window(fleet, 24)), _md(_window(fleet, 48))
    assert _num(day, "NumberOfChargingSessions") > 50  # non-trivial fleet activity
    for key in (*COUNTS, *AMOUNTS):
        ratio = _num(two_days, key) / _num(day, key)
        assert 1.9 <= ratio <= 2.1, (key, ratio)
    # Plausible per-session ranges from the brief.
    sessions = _num(day, "NumberOfChargingSessions")
    assert 3 <= _num(day, "SalesAmountForTimeInterval") / sessions <= 12
    assert 20 * 60 <= _num(day, "TotalChargingSessionsDuration") / sessions <= 90 * 60
    assert 5 <= _num(day, "TotalEnergyConsumption") / sessions <= 40
    assert sessions <= _num(day, "NumberOfTransactionsForTimeInterval") <= sessions * 1.2


def test_figures_never_decrease_as_window_grows() -> None:
    fleet = Fleet(FleetSpec())
    previous = _md(_window(fleet, 0))
    assert _num(previous, "NumberOfChargingSessions") == 0
    for hours in (0.5, 1, 3, 10, 24, 24 * 7):
        current = _md(_window(fleet, hours))
        for key in (*COUNTS, *AMOUNTS):
            assert _num(current, key) >= _num(previous, key)
        previous = current


def test_window_is_clipped_at_now() -> None:
    fleet = Fleet(FleetSpec())
    past = _window(fleet, 24)
    future = fleet.dashboard(
        ACTOR,
        start=NOW - timedelta(hours=24),
        end=NOW + timedelta(days=5),
        machine=None,
        time_period=None,
        now=NOW,
    )
    assert future == past


def test_naive_datetimes_are_utc() -> None:
    fleet = Fleet(FleetSpec())
    naive = NOW.replace(tzinfo=None)
    doc = fleet.dashboard(
        ACTOR,
        start=naive - timedelta(hours=24),
        end=naive,
        machine=None,
        time_period=None,
        now=naive,
    )
    assert doc == _window(fleet, 24)


def test_per_machine_sum_equals_actor_wide() -> None:
    fleet = Fleet(FleetSpec())
    total = _md(_window(fleet, 72))
    parts = [_md(_window(fleet, 72, machine=m)) for m in fleet.machines(ACTOR)]
    for key in COUNTS:
        assert sum(_num(p, key) for p in parts) == _num(total, key)
    for key in AMOUNTS:
        assert math.isclose(sum(_num(p, key) for p in parts), _num(total, key), rel_tol=1e-9)


def test_operator_figures_are_consistent() -> None:
    fleet = Fleet(FleetSpec(machines_per_actor=40))
    silent_seen: set[int] = set()
    for bucket in range(50):
        now = NOW + timedelta(seconds=300 * bucket)
        od = _od(
            fleet.dashboard(ACTOR, start=now, end=now, machine=None, time_period=None, now=now)
        )
        assert od["TotalOperatorMachines"] == 40
        assert od["TotalCommunicatingMachines"] + od["TotalSilentMachines"] == 40
        assert 0 <= od["TotalActiveMachines"] <= od["TotalCommunicatingMachines"]
        silent_seen.add(od["TotalSilentMachines"])
    assert len(silent_seen) > 1  # silence changes from bucket to bucket
    assert 1 <= sum(silent_seen) / len(silent_seen) <= 10  # around 10% of 40


def test_status_is_stable_within_a_bucket() -> None:
    fleet = Fleet(FleetSpec(machines_per_actor=40))
    bucket_start = datetime.fromtimestamp(300 * (int(NOW.timestamp()) // 300), UTC)
    first = _od(_window(fleet, 1))
    for offset in (0, 1, 150, 299):
        now = bucket_start + timedelta(seconds=offset)
        od = _od(
            fleet.dashboard(ACTOR, start=now, end=now, machine=None, time_period=None, now=now)
        )
        assert od == first


def test_silence_forces_machines_silent_and_unsilence_restores() -> None:
    fleet = Fleet(FleetSpec(silent_probability=0.0))
    before = _window(fleet, 24)
    assert _od(before)["TotalSilentMachines"] == 0
    fleet.silence(ACTOR, 3)
    after = _window(fleet, 24)
    assert _od(after)["TotalSilentMachines"] == 3
    assert _od(after)["TotalCommunicatingMachines"] == 7
    assert _od(after)["TotalActiveMachines"] <= 7
    # A forced-silent machine contributes nothing.
    first = fleet.machines(ACTOR)[0]
    assert _num(_md(_window(fleet, 24, machine=first)), "NumberOfChargingSessions") == 0
    assert _num(_md(after), "NumberOfChargingSessions") < _num(
        _md(before), "NumberOfChargingSessions"
    )
    # Other actors unaffected; a new count replaces the old one.
    other = fleet.dashboard(ACTOR + 1, start=NOW, end=NOW, machine=None, time_period=None, now=NOW)
    assert _od(other)["TotalSilentMachines"] == 0
    fleet.silence(ACTOR, 1)
    assert _od(_window(fleet, 24))["TotalSilentMachines"] == 1
    fleet.unsilence()
    assert _window(fleet, 24) == before


def test_silence_adds_to_random_silence() -> None:
    fleet = Fleet(FleetSpec(machines_per_actor=20, silent_probability=0.2))
    base = _od(_window(fleet, 1))["TotalSilentMachines"]
    fleet.silence(ACTOR, 20)
    assert _od(_window(fleet, 1))["TotalSilentMachines"] == 20
    fleet.unsilence(ACTOR)
    assert _od(_window(fleet, 1))["TotalSilentMachines"] == base
    with pytest.raises(KeyError):
        fleet.silence(12345, 1)
    with pytest.raises(ValueError, match="count"):
        fleet.silence(ACTOR, -1)


def test_all_silent_means_no_activity() -> None:
    fleet = Fleet(FleetSpec(silent_probability=1.0))
    doc = _window(fleet, 24)
    assert _od(doc) == {
        "TotalOperatorMachines": 10,
        "TotalCommunicatingMachines": 0,
        "TotalActiveMachines": 0,
        "TotalSilentMachines": 10,
    }
    assert _num(_md(doc), "NumberOfChargingSessions") == 0


@pytest.mark.parametrize(
    ("symbol", "name", "factor"),
    [("Wh", "Watt hour", 1000.0), ("MWh", "Megawatt hour", 0.001), ("kWh", "Kilowatt hour", 1.0)],
)
def test_energy_units(symbol: str, name: str, factor: float) -> None:
    kwh = _md(_window(Fleet(FleetSpec()), 24))
    other = _md(_window(Fleet(FleetSpec(energy_unit_symbol=symbol)), 24))
    assert other["UnitOfMeasureSymbol"] == symbol
    assert other["UnitOfMeasure"] == name
    assert math.isclose(
        _num(other, "TotalEnergyConsumption"),
        _num(kwh, "TotalEnergyConsumption") * factor,
        rel_tol=1e-6,
    )
    assert other["NumberOfChargingSessions"] == kwh["NumberOfChargingSessions"]


def test_energy_unit_override_per_actor() -> None:
    spec = FleetSpec(energy_unit_overrides=((ACTOR + 1, "Wh"), (ACTOR + 2, "BTU")))
    fleet = Fleet(spec)
    units = []
    for actor in fleet.actor_ids():
        doc = fleet.dashboard(actor, start=NOW, end=NOW, machine=None, time_period=None, now=NOW)
        units.append((_md(doc)["UnitOfMeasureSymbol"], _md(doc)["UnitOfMeasure"]))
    assert units == [("kWh", "Kilowatt hour"), ("Wh", "Watt hour"), ("BTU", "BTU")]


def test_dashboard_rejects_bad_input() -> None:
    fleet = Fleet(FleetSpec())
    with pytest.raises(KeyError):
        fleet.dashboard(1, start=NOW, end=NOW, machine=None, time_period=None, now=NOW)
    foreign = fleet.machines(ACTOR + 1)[0]
    with pytest.raises(ValueError, match="does not belong"):
        _window(fleet, 1, machine=foreign)
    with pytest.raises(ValueError, match="after"):
        fleet.dashboard(
            ACTOR, start=NOW, end=NOW - timedelta(1), machine=None, time_period=None, now=NOW
        )


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="silent_probability"):
        FleetSpec(silent_probability=1.5)
    with pytest.raises(ValueError, match="machines_per_actor"):
        FleetSpec(machines_per_actor=100_000)
    with pytest.raises(ValueError, match="silence_period_s"):
        replace(FleetSpec(), silence_period_s=0)


def test_resolve_window_defaults() -> None:
    day = timedelta(hours=24)
    assert resolve_window(None, None, None, NOW) == (NOW - day, NOW)
    # Simulator convention: TimePeriod N = N days ending now (only without dates).
    assert resolve_window(None, None, 7, NOW) == (NOW - timedelta(days=7), NOW)
    assert resolve_window(None, None, 0, NOW) == (NOW - day, NOW)
    start = NOW - timedelta(days=3)
    assert resolve_window(start, None, 7, NOW) == (start, NOW)
    assert resolve_window(None, start, None, NOW) == (start - day, start)
    # Huge codes and ancient dates do not overflow.
    assert resolve_window(None, None, 2**31 - 1, NOW)[0].year < 1930
    ancient = datetime(1, 1, 1, tzinfo=UTC)
    assert resolve_window(None, ancient, None, NOW) == (ancient, ancient)


def test_long_windows_and_big_fleets_are_fast() -> None:
    fleet = Fleet(FleetSpec(actors=1, machines_per_actor=2000))
    started = time.perf_counter()
    for i in range(20):
        now = NOW + timedelta(seconds=301 * i)  # new silence bucket every call
        doc = fleet.dashboard(
            ACTOR, start=now - timedelta(days=120), end=now, machine=None, time_period=None, now=now
        )
    elapsed = time.perf_counter() - started
    assert _num(_md(doc), "NumberOfChargingSessions") > 1_000_000
    assert elapsed < 2.0, elapsed


def test_machine_by_id_finds_every_listed_machine_of_every_actor_and_nothing_else() -> None:
    fleet = Fleet(FleetSpec(actors=3, machines_per_actor=4, other_machines_per_actor=2))
    listed = [m for actor_id in fleet.actor_ids() for m in fleet.listed_machines(actor_id)]
    assert len(listed) == 3 * (4 + 2)
    for machine in listed:
        assert fleet.machine_by_id(machine.id) is machine
    assert fleet.machine_by_id(max(m.id for m in listed) + 1) is None
    assert fleet.machine_by_id(-1) is None
