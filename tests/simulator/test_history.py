"""The simulator's transaction history (figures of adjacent ranges add up, refunds
take sales back) and its settable clock (``/_sim/clock``)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import requests

from exporter.simulator import Fleet, FleetSpec, SimClock, SimulatorServer
from exporter.simulator.history import History, Totals

ACTOR = 2001492652
NOW = datetime(2025, 5, 20, 10, tzinfo=UTC)


def history(refund_share: float = 0.0) -> History:
    return History(
        "test",
        sessions_per_hour=2.0,
        price=6.0,
        seconds_per_session=1800,
        kwh_per_session=20.0,
        extra_transaction_share=0.1,
        refund_share=refund_share,
    )


def test_adjacent_ranges_add_up_to_their_union_wherever_they_are_cut() -> None:
    machine = history(refund_share=0.2)
    start, end = NOW.timestamp() - 90 * 86400, NOW.timestamp()
    whole = machine.between(start, end)
    assert whole.sessions > 4000
    for cut in (start + 1, start + 12345.678, end - 86400 * 31, end - 0.5):
        assert machine.between(start, cut) + machine.between(cut, end) == whole
    # Far in the past (negative session indexes) just the same.
    assert machine.between(0, 3600) + machine.between(3600, 7200) == machine.between(0, 7200)


def test_sessions_are_recorded_in_order_at_the_pace_of_the_profile() -> None:
    machine = history()
    times = [machine.session_time(i) for i in range(-50, 50)]
    assert times == sorted(times)
    assert all(b - a >= 0.2 * machine.gap for a, b in itertools.pairwise(times))
    first = times[10]
    assert machine.between(first, first + 1e-6).sessions == 1  # [start, end): its instant in
    assert machine.between(first - 1e-6, first).sessions == 0


def test_a_refund_takes_back_the_price_of_its_session_later() -> None:
    machine = history(refund_share=0.5)
    refund = machine.refund_times(NOW.timestamp(), NOW.timestamp() + 86400)[0]
    just_before = machine.between(0, refund)
    just_after = machine.between(0, refund + 1e-6)
    assert just_after.sales_cents < just_before.sales_cents
    assert just_after.transactions == just_before.transactions + 1
    assert (just_after.sessions, just_after.energy_wh) == (
        just_before.sessions,
        just_before.energy_wh,
    )


def test_the_dashboard_is_the_sum_of_the_machines_transactions() -> None:
    fleet = Fleet(FleetSpec(seed=3, actors=1, machines_per_actor=3))
    start, end = NOW - timedelta(days=40), NOW
    doc = fleet.dashboard(ACTOR, start=start, end=end, machine=None, time_period=None, now=NOW)
    totals = sum(
        (fleet.totals(ACTOR, start, end, machine) for machine in fleet.machines(ACTOR)), Totals()
    )
    figures = doc["MachineDashboard"]
    assert isinstance(figures, dict)
    assert figures["NumberOfChargingSessions"] == totals.sessions
    assert figures["SalesAmountForTimeInterval"] == totals.sales_cents / 100
    assert figures["TotalEnergyConsumption"] == totals.energy_wh / 1000


def test_activity_scales_the_pace() -> None:
    calm = Fleet(FleetSpec(seed=3, actors=1, machines_per_actor=1))
    busy = Fleet(FleetSpec(seed=3, actors=1, machines_per_actor=1, activity=100.0))
    hour = (NOW - timedelta(hours=1), NOW)
    assert busy.totals(ACTOR, *hour).sessions >= 50 * max(1, calm.totals(ACTOR, *hour).sessions)
    with pytest.raises(ValueError, match="activity"):
        FleetSpec(activity=-1.0)


def test_the_clock_runs_from_the_instant_it_is_set_to() -> None:
    ticks = iter([100.0, 100.0, 110.0])
    clock = SimClock(real=lambda: 5.0, monotonic=lambda: next(ticks))
    assert clock.now() == 5.0  # real time until set
    clock.set(1_000.0, rate=2.0)  # monotonic 100
    assert clock.now() == 1_000.0  # monotonic 100
    assert clock.now() == 1_020.0  # monotonic 110: 10 s at twice the pace
    clock.reset()
    assert clock.now() == 5.0
    with pytest.raises(ValueError, match="rate"):
        clock.set(1_000.0, rate=-1.0)


def test_the_clock_endpoint_moves_the_vendors_now() -> None:
    fleet = Fleet(FleetSpec(seed=3, actors=1, machines_per_actor=2, silent_probability=0.0))
    with SimulatorServer(fleet, tokens="t") as sim, requests.Session() as client:
        at = NOW.timestamp()
        set_reply = client.post(f"{sim.url}/_sim/clock", json={"now": at, "rate": 0}, timeout=5)
        assert set_reply.json() == {"now": at, "rate": 0.0, "set": True}
        assert client.get(f"{sim.url}/_sim/clock", timeout=5).json()["now"] == at
        params = {"StartDate": "2025-05-20T09:00:00Z", "EndDate": "2025-05-21T00:00:00Z"}
        answer = client.get(
            f"{sim.url}/v1/actors/{ACTOR}/evDashboard",
            params=params,
            headers={"Authorization": "Bearer t"},
            timeout=5,
        ).json()
        # Clipped at the simulator's now, 10:00: one hour of transactions, not fifteen.
        hour = fleet.totals(ACTOR, NOW - timedelta(hours=1), NOW)
        assert answer["MachineDashboard"]["NumberOfChargingSessions"] == hour.sessions
        assert sim.requests()[-1].wall == at
        bad = client.post(f"{sim.url}/_sim/clock", json={"now": "soon"}, timeout=5)
        assert bad.status_code == 400
        assert client.delete(f"{sim.url}/_sim/clock", timeout=5).json()["set"] is False
