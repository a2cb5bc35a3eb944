"""The snapshot store as a unit: swaps, transitions, reloads, readiness, expiry."""

from __future__ import annotations

import threading
import time

from exporter.config import parse_config
from exporter.kinds.base import Problem
from exporter.kinds.ev_dashboard import MachineFigures, OperatorStatus, Reading
from exporter.polling.store import PollOutcome, SnapshotStore, Transition
from exporter.targets import Target, build_targets

READING = Reading(OperatorStatus(machines=3), MachineFigures(), energy_unit=None, time_period=None)


def targets(*actors: int) -> tuple[Target, ...]:
    listed = ", ".join(f"{{id: {a}}}" for a in actors)
    return build_targets(parse_config(f"lynx: {{token: t}}\nactors: [{listed}]\n", environ={}))


def ok(target: Target, at: float, reading: Reading = READING) -> PollOutcome:
    return PollOutcome(key=target.key, finished_at=at, reading=reading, status=200)


def failed(target: Target, at: float, reason: str = "timeout") -> PollOutcome:
    return PollOutcome(
        key=target.key, finished_at=at, reading=None, error_reason=reason, error="no answer"
    )


def test_a_swap_returns_one_transition_per_outcome_in_order() -> None:
    (target,) = targets(7)
    store = SnapshotStore([target], stale_after=60.0)
    swap = store.swap([ok(target, 1.0), failed(target, 2.0), ok(target, 3.0)])
    assert [type(t) for t in swap.transitions] == [Transition] * 3
    first, second, third = swap.transitions
    assert (first.old.polled, first.new.up) == (False, True)
    assert first.new is second.old and second.new is third.old  # chained, not re-applied
    assert (second.new.up, second.new.last_error_reason) == (False, "timeout")
    assert second.new.reading is READING  # the last reading is kept while failing
    assert [t.changed for t in swap.transitions] == [True, True, True]
    assert store.current() is swap.snapshot and swap.snapshot.states[target.key] is third.new


def test_a_repeat_of_the_same_state_is_no_change() -> None:
    (target,) = targets(7)
    store = SnapshotStore([target], stale_after=60.0)
    store.swap([failed(target, 1.0)])
    (again,) = store.swap([failed(target, 2.0)]).transitions
    assert not again.changed and again.new.last_poll == 2.0


def test_problems_keep_the_reading_but_not_up() -> None:
    (target,) = targets(7)
    store = SnapshotStore([target], stale_after=60.0)
    flawed = Reading(
        OperatorStatus(),
        MachineFigures(),
        energy_unit="xWh",
        time_period=None,
        problems=(Problem("unknown_unit", "energy", "xWh"),),
    )
    (transition,) = store.swap([ok(target, 1.0, flawed)]).transitions
    assert transition.new.reading is flawed and not transition.new.up
    assert transition.new.last_error_reason == "unknown_unit"
    assert transition.new.last_success == 1.0


def test_outcomes_for_removed_targets_are_dropped_without_a_swap() -> None:
    kept, removed = targets(7, 8)[0], targets(8)[0]
    store = SnapshotStore([kept], stale_after=60.0)
    before = store.current()
    swap = store.swap([ok(removed, 1.0)])
    assert swap.transitions == () and store.current() is before


def test_reload_keeps_surviving_state_objects_and_drops_removed_targets() -> None:
    first, second = targets(7, 8)
    store = SnapshotStore([first, second], stale_after=60.0)
    store.swap([ok(first, 1.0), ok(second, 1.0)])
    survivor = store.current().states[first.key]
    (new,) = targets(9)
    snapshot = store.set_targets([first, new], stale_after=30.0)
    assert snapshot.states[first.key] is survivor  # untouched: renderer keeps its cache
    assert second.key not in snapshot.states
    assert not snapshot.states[new.key].polled and not snapshot.ready
    assert snapshot.stale_after == 30.0


def test_ready_once_every_target_was_polled_and_next_expiry() -> None:
    first, second = targets(7, 8)
    store = SnapshotStore([first, second], stale_after=10.0)
    assert not store.current().ready
    store.swap([ok(first, 100.0)])
    assert not store.current().ready
    snapshot = store.swap([failed(second, 101.0)]).snapshot
    assert snapshot.ready  # a failed poll is a poll
    assert snapshot.next_expiry(now=105.0) == 110.0
    assert snapshot.next_expiry(now=111.0) is None
    assert snapshot.states[first.key].fresh(109.9, 10.0)
    assert not snapshot.states[first.key].fresh(110.0, 10.0)


def test_wait_for_change_wakes_on_a_swap_and_times_out_without_one() -> None:
    (target,) = targets(7)
    store = SnapshotStore([target], stale_after=60.0)
    generation = store.current().generation
    started = time.monotonic()
    assert store.wait_for_change(generation, 0.05).generation == generation
    assert time.monotonic() - started < 1.0
    timer = threading.Timer(0.05, lambda: store.swap([ok(target, 1.0)]))
    timer.start()
    try:
        assert store.wait_for_change(generation, 5.0).generation == generation + 1
    finally:
        timer.join()
