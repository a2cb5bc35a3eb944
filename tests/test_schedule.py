"""The schedule as a unit: even phases on a grid that never drifts nor bursts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.polling.schedule import first_due, next_due, phases
from exporter.targets import TargetKey


def keys(count: int) -> list[TargetKey]:
    return [TargetKey(1, f"id:{i}", "24h") for i in range(count)]


def test_phases_are_evenly_spread_in_config_order() -> None:
    offsets = phases(keys(4), 8.0)
    assert list(offsets.values()) == [0.0, 2.0, 4.0, 6.0]
    assert phases([], 8.0) == {}
    assert set(phases(keys(3), 0.0).values()) == {0.0}  # --once: everything at once


def test_first_due_is_the_phase_itself_at_the_epoch() -> None:
    # The first round starts at once: phase 0 fires at the epoch, not an interval later.
    assert first_due(100.0, 0.0, 60.0, now=100.0) == 100.0
    assert first_due(100.0, 15.0, 60.0, now=100.0) == 115.0


def test_first_due_after_a_reload_is_the_next_grid_point() -> None:
    assert first_due(100.0, 15.0, 60.0, now=130.0) == 175.0
    assert first_due(100.0, 15.0, 60.0, now=175.0) == 175.0


def test_next_due_skips_missed_points_instead_of_bursting() -> None:
    assert next_due(100.0, 10.0, now=101.0) == 110.0
    assert next_due(100.0, 10.0, now=135.0) == 140.0  # 110, 120, 130 were missed
    assert next_due(100.0, 10.0, now=110.0) == 110.0


@given(
    previous=st.floats(0, 1e6),
    interval=st.floats(0.01, 1e4),
    late=st.floats(0, 1e5),
)
def test_next_due_stays_on_the_grid_and_in_the_future(
    previous: float, interval: float, late: float
) -> None:
    now = previous + late
    due = next_due(previous, interval, now)
    assert due >= now - 1e-6 * max(1.0, now)
    steps = (due - previous) / interval
    assert steps == pytest.approx(round(steps), abs=1e-6 * max(1.0, steps))
    assert due - interval < now + 1e-6 * max(1.0, now)  # the first such point, not later
