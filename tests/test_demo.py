"""The demo's fleet, as the README describes it: three operators with their own
charger names, six chargers each, and exactly the forced-silent ones silent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exporter.demo import DEMO_ACTORS, DEMO_CHARGERS_PER_ACTOR, DEMO_SILENT, demo_fleet

START = datetime(2026, 5, 14, 9, 0, tzinfo=UTC)


def test_every_demo_charger_has_its_own_name() -> None:
    fleet = demo_fleet()
    names = [m.name for actor in fleet.actor_ids() for m in fleet.listed_machines(actor)]
    assert len(names) == len(set(names)), sorted(names)
    chargers = [m for actor in fleet.actor_ids() for m in fleet.machines(actor)]
    assert len(chargers) == len(DEMO_ACTORS) * DEMO_CHARGERS_PER_ACTOR == 18


def test_the_demo_silences_exactly_the_forced_chargers() -> None:
    """Three, whenever one looks (the README says so), never a random extra one."""
    fleet = demo_fleet()
    actors = fleet.actor_ids()
    for index, count in DEMO_SILENT:
        fleet.silence(actors[index], count)
    forced = dict(DEMO_SILENT)
    assert sum(forced.values()) == 3
    for minutes in range(0, 24 * 60, 7):  # every silence bucket of a day, and more
        now = START + timedelta(minutes=minutes)
        for index, actor in enumerate(actors):
            document = fleet.dashboard(
                actor, start=now - timedelta(hours=24), end=now, machine=None,
                time_period=None, now=now,
            )  # fmt: skip
            status = document["OperatorDashboard"]
            assert isinstance(status, dict)
            assert status["TotalSilentMachines"] == forced.get(index, 0), (now, index)
            random_silent, silenced, _ = fleet.silence_state(actor, now)
            assert not random_silent and len(silenced) == forced.get(index, 0)
